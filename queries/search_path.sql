-- Purpose: the schemas an unqualified name is looked up in, when the spec sets no
--          settings.schemas (the connection's search_path, implicit schemas excluded).
-- Binds: none.
-- Returns: schemas text[].
SELECT current_schemas(false)::text[] AS schemas
