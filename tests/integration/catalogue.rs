use crate::common::{TestDb, rt};

#[test]
fn every_catalogue_query_prepares() {
    rt().block_on(async {
        let db = TestDb::new("catalogue").await;
        let client = db.client().await;
        for q in migval::sql::ALL {
            if let Err(e) = client.prepare(q.sql).await {
                panic!(
                    "queries/{} does not prepare: {}",
                    q.name,
                    migval::db::failure(&e, None)
                );
            }
            assert!(
                q.sql.trim_start().starts_with("--"),
                "queries/{} must open with a comment block",
                q.name
            );
        }
    });
}
