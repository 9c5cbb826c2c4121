//! The one SQL lexer: just enough of PostgreSQL's scanner to know where string literals
//! (`'...'` with `''`, `E'...'` with backslash escapes, `B`/`X`/`N` prefixes, `$tag$...$tag$`),
//! quoted identifiers, `--` line comments and nested `/* */` block comments begin and end. Three
//! readers share it, so they cannot disagree about what is code and what is text:
//! - `engine::script` splits and classifies migration scripts with its tokens;
//! - `sql::ident::rename_identifiers` renames identifier tokens only, never text in literals or
//!   comments;
//! - [`escapes`] refuses user fragments that would not stay inside their slot once embedded in
//!   generated SQL.
//!
//! Byte-based: every delimiter is ASCII, and bytes >= 0x80 only ever appear inside identifiers,
//! literals and comments, so token boundaries are char boundaries. Plain `'...'` strings are read
//! with `standard_conforming_strings = on` (the default since PostgreSQL 9.1).
//!
//! The fragment check, on its own terms: a fragment that leaves a comment, literal or quoted
//! identifier open would swallow the rest of the fused query (the closing parenthesis, the
//! other checks' metrics); one with a stray `*/` would close more than it opened. Such
//! fragments are refused during validation, naming the position.
//!
//! ```text
//!   "status = 'a' /* note"          -> `/*` at character 14 is never closed
//!   "x /* a /* b */ c */ > 0"       -> fine: PostgreSQL nests block comments
//!   "x > 0 */"                      -> `*/` at character 7 closes a comment never opened
//! ```
//! A `--` comment needs no check: every fragment is embedded followed by a newline
//! (`engine::plan::embed`), where the comment ends.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tok<'a> {
    /// An unquoted identifier or keyword, as written.
    Word(&'a str),
    /// A double-quoted identifier, with `""` undoubled.
    Quoted(String),
    /// A string constant of any form: '...', E'...', B'...', X'...', N'...', $tag$...$tag$.
    Literal,
    Number,
    /// `$1`.
    Param,
    /// Any other single character (`;`, `(`, `)`, `.`, `\`, operator characters).
    Punct(u8),
}

/// One token; whitespace and comments lie in the gaps between tokens.
#[derive(Debug, Clone)]
pub struct Token<'a> {
    pub tok: Tok<'a>,
    /// Byte range in the lexed text.
    pub start: usize,
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
}

impl Token<'_> {
    pub fn is_kw(&self, kw: &str) -> bool {
        matches!(self.tok, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }
}

/// What was left open at the end of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclosed {
    StringLiteral,
    QuotedIdentifier,
    DollarQuoted,
    BlockComment,
}

impl Unclosed {
    pub fn noun(self) -> &'static str {
        match self {
            Unclosed::StringLiteral => "string literal",
            Unclosed::QuotedIdentifier => "quoted identifier",
            Unclosed::DollarQuoted => "dollar-quoted string",
            Unclosed::BlockComment => "block comment",
        }
    }
}

/// A construct opened and never closed: what, at which byte (the opening quote, `$` or `/*`)
/// and on which 1-based line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexError {
    pub what: Unclosed,
    pub start: usize,
    pub line: usize,
}

/// Every token of `text`, or the first construct left open.
pub fn tokenize(text: &str) -> Result<Vec<Token<'_>>, LexError> {
    let mut lexer = Lexer::new(text);
    let mut tokens = Vec::new();
    while let Some(t) = lexer.next_token()? {
        tokens.push(t);
    }
    Ok(tokens)
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_cont(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

pub struct Lexer<'a> {
    text: &'a str,
    b: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Self {
        // Editors on Windows like to start files with a byte-order mark; PostgreSQL would
        // read it as part of the first keyword.
        let pos = if text.starts_with('\u{feff}') {
            '\u{feff}'.len_utf8()
        } else {
            0
        };
        Lexer {
            text,
            b: text.as_bytes(),
            pos,
            line: 1,
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.b.get(self.pos + ahead).copied()
    }

    /// The next token, skipping whitespace and comments; `None` at the end of the text.
    pub fn next_token(&mut self) -> Result<Option<Token<'a>>, LexError> {
        loop {
            let Some(c) = self.peek(0) else {
                return Ok(None);
            };
            match c {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' | 0x0b | 0x0c => self.pos += 1,
                b'-' if self.peek(1) == Some(b'-') => {
                    // Up to, not including, the newline, so the line count sees it.
                    self.pos = self.b[self.pos..]
                        .iter()
                        .position(|&x| x == b'\n')
                        .map_or(self.b.len(), |p| self.pos + p);
                }
                b'/' if self.peek(1) == Some(b'*') => self.block_comment()?,
                _ => {
                    let (start, line) = (self.pos, self.line);
                    let tok = self.token(c)?;
                    return Ok(Some(Token {
                        tok,
                        start,
                        end: self.pos,
                        line,
                    }));
                }
            }
        }
    }

    fn token(&mut self, c: u8) -> Result<Tok<'a>, LexError> {
        Ok(match c {
            b'\'' => {
                self.quoted(b'\'', false, Unclosed::StringLiteral)?;
                Tok::Literal
            }
            b'"' => {
                let start = self.pos;
                self.quoted(b'"', false, Unclosed::QuotedIdentifier)?;
                let inner = self
                    .text
                    .get(start + 1..self.pos.saturating_sub(1))
                    .unwrap_or_default();
                Tok::Quoted(inner.replace("\"\"", "\""))
            }
            b'$' => self.dollar()?,
            b'0'..=b'9' => self.number(),
            b'.' if self.peek(1).is_some_and(|d| d.is_ascii_digit()) => self.number(),
            c if is_ident_start(c) => self.word()?,
            c => {
                self.pos += 1;
                Tok::Punct(c)
            }
        })
    }

    /// An identifier or keyword; a lone `E`, `B`, `X` or `N` right before a quote is a string
    /// prefix instead (`E'...'` being the one where backslash escapes).
    fn word(&mut self) -> Result<Tok<'a>, LexError> {
        let start = self.pos;
        while self.peek(0).is_some_and(is_ident_cont) {
            self.pos += 1;
        }
        let word = self.text.get(start..self.pos).unwrap_or_default();
        if self.peek(0) == Some(b'\'')
            && let [prefix] = word.as_bytes()
            && b"eEbBxXnN".contains(prefix)
        {
            let escapes = prefix.eq_ignore_ascii_case(&b'e');
            self.quoted(b'\'', escapes, Unclosed::StringLiteral)?;
            return Ok(Tok::Literal);
        }
        Ok(Tok::Word(word))
    }

    fn number(&mut self) -> Tok<'a> {
        // Digits, a decimal point, exponent and PostgreSQL 16's `1_000` / `0x1F`: none of it
        // can hide a `;`, so precision here does not matter.
        while self
            .peek(0)
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
        {
            self.pos += 1;
        }
        Tok::Number
    }

    /// A quoted run starting at `self.pos` and ending at the matching `quote`; a doubled quote
    /// stands for itself, and with `escapes` a backslash protects the next byte.
    fn quoted(&mut self, quote: u8, escapes: bool, what: Unclosed) -> Result<(), LexError> {
        let open = LexError {
            what,
            start: self.pos,
            line: self.line,
        };
        self.pos += 1;
        loop {
            let Some(c) = self.peek(0) else {
                return Err(open);
            };
            self.pos += 1;
            if c == quote {
                if self.peek(0) != Some(quote) {
                    return Ok(());
                }
                self.pos += 1;
            } else if escapes && c == b'\\' {
                if let Some(next) = self.peek(0) {
                    self.line += usize::from(next == b'\n');
                    self.pos += 1;
                }
            } else if c == b'\n' {
                self.line += 1;
            }
        }
    }

    /// `$1` (a parameter), `$tag$ ... $tag$` / `$$ ... $$` (a string), or a lone `$`.
    fn dollar(&mut self) -> Result<Tok<'a>, LexError> {
        if self.peek(1).is_some_and(|d| d.is_ascii_digit()) {
            self.pos += 1;
            while self.peek(0).is_some_and(|d| d.is_ascii_digit()) {
                self.pos += 1;
            }
            return Ok(Tok::Param);
        }
        // The tag is an identifier without `$`: a letter, `_` or non-ASCII first.
        let mut i = self.pos + 1;
        if self.b.get(i).is_some_and(|&c| is_ident_start(c)) {
            i += 1;
            while self
                .b
                .get(i)
                .is_some_and(|&c| is_ident_start(c) || c.is_ascii_digit())
            {
                i += 1;
            }
        }
        if self.b.get(i) != Some(&b'$') {
            self.pos += 1;
            return Ok(Tok::Punct(b'$'));
        }
        let tag = self.text.get(self.pos..=i).unwrap_or_default();
        let body = i + 1;
        let close = self
            .text
            .get(body..)
            .and_then(|rest| rest.find(tag))
            .ok_or(LexError {
                what: Unclosed::DollarQuoted,
                start: self.pos,
                line: self.line,
            })?;
        let end = body + close + tag.len();
        self.line += self.b[self.pos..end]
            .iter()
            .filter(|&&c| c == b'\n')
            .count();
        self.pos = end;
        Ok(Tok::Literal)
    }

    /// `/* ... */`, nested as PostgreSQL nests them.
    fn block_comment(&mut self) -> Result<(), LexError> {
        let open = LexError {
            what: Unclosed::BlockComment,
            start: self.pos,
            line: self.line,
        };
        let mut depth = 0usize;
        loop {
            match (self.peek(0), self.peek(1)) {
                (Some(b'/'), Some(b'*')) => {
                    depth += 1;
                    self.pos += 2;
                }
                (Some(b'*'), Some(b'/')) => {
                    self.pos += 2;
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(());
                    }
                }
                (Some(c), _) => {
                    self.line += usize::from(c == b'\n');
                    self.pos += 1;
                }
                (None, _) => return Err(open),
            }
        }
    }
}

/// Why `fragment` would not stay inside its slot, or `None` when it does.
pub fn escapes(fragment: &str) -> Option<String> {
    // Character (not byte) positions, 1-based, as an editor shows them.
    let at = |i: usize| fragment.get(..i).map_or(i, |s| s.chars().count()) + 1;
    let mut lexer = Lexer::new(fragment);
    let mut star: Option<usize> = None;
    loop {
        match lexer.next_token() {
            Ok(None) => return None,
            Ok(Some(t)) => {
                // `*` then `/` with nothing between: outside a comment, that closes one never
                // opened.
                if t.tok == Tok::Punct(b'/')
                    && let Some(s) = star
                    && s + 1 == t.start
                {
                    return Some(format!(
                        "`*/` at character {} closes a block comment that was never opened",
                        at(s)
                    ));
                }
                star = (t.tok == Tok::Punct(b'*')).then_some(t.start);
            }
            Err(e) => {
                let at = at(e.start);
                return Some(match e.what {
                    Unclosed::StringLiteral => format!(
                        "the string literal opened at character {at} is never closed (a `'` \
                         inside a literal is written `''`)"
                    ),
                    Unclosed::QuotedIdentifier => {
                        format!("the quoted identifier opened at character {at} is never closed")
                    }
                    Unclosed::DollarQuoted => {
                        let rest = fragment.get(e.start + 1..).unwrap_or_default();
                        let tag = rest
                            .find('$')
                            .map_or("$", |p| &fragment[e.start..e.start + p + 2]);
                        format!(
                            "the dollar-quoted string {tag} opened at character {at} is never \
                             closed"
                        )
                    }
                    Unclosed::BlockComment => format!(
                        "the block comment `/*` opened at character {at} is never closed \
                         (PostgreSQL nests block comments: each `/*` needs its own `*/`)"
                    ),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::escapes;

    #[test]
    fn balanced_fragments_pass() {
        for ok in [
            "status = 'active'",
            "status = 'it''s' -- note",
            "x /* a /* b */ c */ > 0",
            "note = '/* not a comment'",
            "\"odd */ name\" > 0",
            "body = $q$ /* $q$",
            "price > $1 AND a$b = 2",
            "s = E'a\\'b /*'",
            "a -- trailing /* comment",
            "a -- one\n AND b /* two */",
        ] {
            assert_eq!(escapes(ok), None, "{ok}");
        }
    }

    #[test]
    fn fragments_that_would_swallow_the_query_are_named() {
        for (bad, says) in [
            (
                "status = 'a' /* note",
                "opened at character 14 is never closed",
            ),
            ("x /* a /* b */ c", "opened at character 3"),
            ("x > 0 */", "`*/` at character 7"),
            ("x /* a */ */", "`*/` at character 11"),
            ("name = 'abc", "string literal opened at character 8"),
            ("\"abc = 1", "quoted identifier"),
            ("b = $x$ abc", "dollar-quoted string $x$"),
            ("s = E'a\\' /*", "string literal"),
        ] {
            let got = escapes(bad).unwrap_or_default();
            assert!(got.contains(says), "{bad}: {got}");
        }
    }
}
