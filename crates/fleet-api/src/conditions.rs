//! Conditions as Fleet sets them (wrangler's `genericcondition`): one per type, the
//! transition time moving only when the status flips, the update time only when anything
//! changes, so that a status computed again from the same facts is equal to the one written
//! before and costs no write. Every binary sets its conditions through [`next`] or [`set`].

use crate::Condition;

/// What a condition should say: its status, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// `True` or `False`.
    pub ok: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
}

impl Verdict {
    /// `True`, with no reason and no message.
    pub fn ok() -> Self {
        Self {
            ok: true,
            reason: None,
            message: None,
        }
    }

    /// `True` or `False` by `ok`; when `False`, with `reason`; `message` either way.
    pub fn new(ok: bool, reason_if_false: &str, message: Option<String>) -> Self {
        Self {
            ok,
            reason: (!ok).then(|| reason_if_false.to_owned()),
            message,
        }
    }

    fn status(&self) -> &'static str {
        if self.ok { "True" } else { "False" }
    }

    fn says(&self, condition: &Condition) -> bool {
        condition.status == self.status()
            && condition.reason == self.reason
            && condition.message == self.message
    }
}

/// The condition `type_` should be now, given the one before (if any): the one before,
/// unchanged, when it already says the same.
pub fn next(previous: Option<&Condition>, type_: &str, verdict: Verdict, now: &str) -> Condition {
    if let Some(same) = previous.filter(|p| verdict.says(p)) {
        return same.clone();
    }
    let status = verdict.status();
    let transitioned = previous
        .filter(|p| p.status == status)
        .and_then(|p| p.last_transition_time.clone());
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        last_update_time: Some(now.to_owned()),
        last_transition_time: Some(transitioned.unwrap_or_else(|| now.to_owned())),
        reason: verdict.reason,
        message: verdict.message,
    }
}

/// The condition of type `type_`, if any.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets `type_` in `conditions` ([`next`] of the one there), keeping the others and their
/// order; a new type is added at the end.
pub fn set(conditions: &mut Vec<Condition>, type_: &str, verdict: Verdict, now: &str) {
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(condition) => *condition = next(Some(condition), type_, verdict, now),
        None => conditions.push(next(None, type_, verdict, now)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(status: &str, message: Option<&str>, at: &str) -> Condition {
        Condition {
            type_: "Ready".to_owned(),
            status: status.to_owned(),
            last_update_time: Some(at.to_owned()),
            last_transition_time: Some(at.to_owned()),
            reason: (status == "False").then(|| "NotReady".to_owned()),
            message: message.map(str::to_owned),
        }
    }

    /// A case: the condition before, the verdict, and what must come out.
    struct Case {
        previous: Option<Condition>,
        verdict: Verdict,
        status: &'static str,
        updated: &'static str,
        transitioned: &'static str,
        message: Option<&'static str>,
    }

    #[test]
    fn timestamps_move_as_wrangler_moves_them() {
        let failing = |message: &str| Verdict::new(false, "NotReady", Some(message.to_owned()));
        let cases = [
            Case {
                previous: None,
                verdict: Verdict::ok(),
                status: "True",
                updated: "t2",
                transitioned: "t2",
                message: None,
            },
            Case {
                previous: Some(ready("True", None, "t1")),
                verdict: Verdict::ok(),
                status: "True",
                updated: "t1",
                transitioned: "t1",
                message: None,
            },
            Case {
                previous: Some(ready("True", None, "t1")),
                verdict: failing("down"),
                status: "False",
                updated: "t2",
                transitioned: "t2",
                message: Some("down"),
            },
            Case {
                previous: Some(ready("False", Some("down"), "t1")),
                verdict: failing("still down"),
                status: "False",
                updated: "t2",
                transitioned: "t1",
                message: Some("still down"),
            },
            Case {
                previous: Some(ready("False", Some("down"), "t1")),
                verdict: failing("down"),
                status: "False",
                updated: "t1",
                transitioned: "t1",
                message: Some("down"),
            },
        ];
        for case in cases {
            let previous = case.previous.as_ref();
            let got = next(previous, "Ready", case.verdict, "t2");
            assert_eq!(got.status, case.status, "{previous:?}");
            assert_eq!(got.last_update_time.as_deref(), Some(case.updated));
            assert_eq!(got.last_transition_time.as_deref(), Some(case.transitioned));
            assert_eq!(got.message.as_deref(), case.message, "{previous:?}");
        }
    }

    #[test]
    fn a_changed_reason_alone_is_a_change() {
        let previous = ready("False", Some("down"), "t1");
        let got = next(
            Some(&previous),
            "Ready",
            Verdict::new(false, "Error", Some("down".to_owned())),
            "t2",
        );
        assert_eq!(got.reason.as_deref(), Some("Error"));
        assert_eq!(got.last_update_time.as_deref(), Some("t2"));
        assert_eq!(got.last_transition_time.as_deref(), Some("t1"));
    }

    #[test]
    fn set_replaces_its_type_and_keeps_the_others_in_place() {
        let mut conditions = vec![ready("True", None, "t1")];
        set(&mut conditions, "Stalled", Verdict::ok(), "t2");
        set(
            &mut conditions,
            "Ready",
            Verdict::new(false, "NotReady", Some("x".to_owned())),
            "t3",
        );
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, ["Ready", "Stalled"]);
        assert_eq!(
            get(&conditions, "Ready").map(|c| c.status.as_str()),
            Some("False")
        );
        assert_eq!(get(&conditions, "Missing"), None);
    }
}
