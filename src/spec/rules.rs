//! How one value is judged, as written in the spec: `tolerance` (exact, abs, rel), `scope`
//! (group, total, both) and `expect` (the intent). Exact numbers are written as strings.

use rust_decimal::Decimal;

use super::raw::{RawExpect, RawNumber, RawTolerance};
use super::validate::Validator;
use super::{Expect, Rule, Scope, Tolerance};

impl Validator<'_> {
    pub(super) fn number(
        &mut self,
        line: usize,
        check: &str,
        key: &str,
        n: &RawNumber,
    ) -> Option<Decimal> {
        let parsed = match n {
            RawNumber::Text(s) => Decimal::from_str_exact(s.trim()).map_err(|e| e.to_string()),
            RawNumber::Int(i) => Ok(Decimal::from(*i)),
            RawNumber::Float(f) => {
                Decimal::from_str_exact(&f.to_string()).map_err(|e| e.to_string())
            }
        };
        match parsed {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    line,
                    check,
                    key,
                    format!("not an exact number ({e}); write it as a string, e.g. \"0.01\""),
                );
                None
            }
        }
    }

    pub(super) fn rule(
        &mut self,
        line: usize,
        check: &str,
        tol: Option<&RawTolerance>,
        exp: Option<&RawExpect>,
        base: Rule,
    ) -> Rule {
        let mut rule = base;
        match tol {
            None => {}
            Some(RawTolerance::Word(w)) if w == "exact" => rule.tolerance = Tolerance::Exact,
            Some(RawTolerance::Word(w)) => self.err(
                line,
                check,
                "tolerance",
                format!("`{w}`: write \"exact\", {{ abs = \"0.01\" }} or {{ rel = \"0.1%\" }}"),
            ),
            Some(RawTolerance::Table(t)) => {
                match (&t.abs, &t.rel) {
                    (Some(_), Some(_)) => self.err(
                        line,
                        check,
                        "tolerance",
                        "give either `abs` or `rel`, not both",
                    ),
                    (Some(a), None) => {
                        if let Some(d) = self.number(line, check, "tolerance.abs", a) {
                            if d.is_sign_negative() {
                                self.err(line, check, "tolerance.abs", "must not be negative");
                            }
                            rule.tolerance = Tolerance::Abs(d);
                        }
                    }
                    (None, Some(r)) => {
                        let pct = matches!(r, RawNumber::Text(s) if s.trim().ends_with('%'));
                        let r = match r {
                            RawNumber::Text(s) => {
                                RawNumber::Text(s.trim().trim_end_matches('%').to_string())
                            }
                            other => other.clone(),
                        };
                        if let Some(d) = self.number(line, check, "tolerance.rel", &r) {
                            let frac = if pct { d / Decimal::ONE_HUNDRED } else { d };
                            if frac.is_sign_negative() {
                                self.err(line, check, "tolerance.rel", "must not be negative");
                            }
                            rule.tolerance = Tolerance::Rel(frac);
                        }
                    }
                    (None, None) => {}
                }
                match t.scope.as_deref() {
                    None => {}
                    Some("group") => rule.scope = Scope::Group,
                    Some("total") => rule.scope = Scope::Total,
                    Some("both") => rule.scope = Scope::Both,
                    Some(other) => self.err(
                        line,
                        check,
                        "tolerance.scope",
                        format!("`{other}`: use \"group\", \"total\" or \"both\""),
                    ),
                }
            }
        }
        match exp {
            None => {}
            Some(RawExpect::Word(w)) => match w.as_str() {
                "unchanged" => rule.expect = Expect::Unchanged,
                "zero" => rule.expect = Expect::Zero,
                "may_change" | "may change" => rule.expect = Expect::MayChange,
                other => self.err(
                    line,
                    check,
                    "expect",
                    format!(
                        "`{other}`: use \"unchanged\", \"zero\", \"may_change\", {{ equals = \"N\" }}, \
                         {{ changes_by = \"N\" }} or {{ between = [\"A\", \"B\"] }}"
                    ),
                ),
            },
            Some(RawExpect::Growth(_)) => self.err(
                line,
                check,
                "expect.grows_at_most",
                "applies to a `sizes` check only",
            ),
            Some(RawExpect::Table(t)) => {
                let given = [t.equals.is_some(), t.changes_by.is_some(), t.between.is_some()]
                    .iter()
                    .filter(|b| **b)
                    .count();
                if given != 1 {
                    self.err(line, check, "expect", "give exactly one of equals, changes_by, between");
                } else if let Some(n) = &t.equals {
                    if let Some(d) = self.number(line, check, "expect.equals", n) {
                        rule.expect = Expect::Equals(d);
                    }
                } else if let Some(n) = &t.changes_by {
                    if let Some(d) = self.number(line, check, "expect.changes_by", n) {
                        rule.expect = Expect::ChangesBy(d);
                    }
                } else if let Some((a, b)) = &t.between {
                    let lo = self.number(line, check, "expect.between", a);
                    let hi = self.number(line, check, "expect.between", b);
                    if let (Some(lo), Some(hi)) = (lo, hi) {
                        if lo > hi {
                            self.err(line, check, "expect.between", format!("{lo} is above {hi}"));
                        }
                        rule.expect = Expect::Between(lo, hi);
                    }
                }
            }
        }
        rule
    }

    /// `scope = "group" | "total" | "both"`.
    pub(super) fn scope(
        &mut self,
        line: usize,
        check: &str,
        key: &str,
        text: &str,
    ) -> Option<Scope> {
        match text {
            "group" => Some(Scope::Group),
            "total" => Some(Scope::Total),
            "both" => Some(Scope::Both),
            other => {
                self.err(
                    line,
                    check,
                    key,
                    format!("`{other}`: use \"group\", \"total\" or \"both\""),
                );
                None
            }
        }
    }
}
