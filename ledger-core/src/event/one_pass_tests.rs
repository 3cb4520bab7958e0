//! The one-pass reader against the general path: for any input, the same event or
//! the same error.

use super::*;
use proptest::prelude::*;
use serde_json::json;

/// The general path alone: a strict value tree, then the rules.
fn general(bytes: &[u8], format: u8) -> Result<Event, EventError> {
    let strict: StrictValue =
        serde_json::from_slice(bytes).map_err(|e| err("", format!("malformed JSON: {e}")))?;
    Event::from_value_as(strict.0, format)
}

/// One valid event of every type in both formats (format-1 free text included).
fn seeds() -> Vec<Value> {
    let base = |t: &str| {
        json!({
            "id": format!("ev-{t}"), "type": t, "message": "MSG-1", "at": "2023-05-08T09:30:00Z",
            "reporter": {"org": "974760673", "system": "websak", "seq": 7},
            "from": "974760673", "to": "964338531",
        })
    };
    let with = |t: &str, extra: Value| {
        let mut v = base(t);
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    vec![
        super::tests::sent(),
        with(
            "sent",
            json!({"channel": "altinn", "category": "document", "expires_at": "2023-06-08T09:30:00+02:00",
                   "content_digest": format!("blake3:{}", "0f".repeat(32))}),
        ),
        base("delivered"),
        with(
            "handed_off",
            json!({"from_system": "altinn-innboks", "to_system": "familia"}),
        ),
        with(
            "received",
            json!({"system": "familia", "journal_ref": "2023/17-1"}),
        ),
        with(
            "opened",
            json!({"by_role": "saksbehandler", "by": "p-91ab"}),
        ),
        with("deleted", json!({"reason": "retention"})),
        with("failed", json!({"error": "timeout"})),
        with(
            "resent",
            json!({"new_message": "MSG-2", "channel": "eformidling"}),
        ),
        with("resolved", json!({"outcome": "known_via_other_channel"})),
        {
            // Format 1 only: free text, and no parties but on a `sent`.
            let mut v = with(
                "resolved",
                json!({"outcome": "known_via_other_channel", "note": "Ringte, levert på papir.\nOK"}),
            );
            v.as_object_mut()
                .unwrap()
                .retain(|k, _| k != "from" && k != "to");
            v
        },
        with(
            "notice",
            json!({"notice": "not_opened", "status": "never_read", "system": "altinn"}),
        ),
        base("acknowledged"),
        base("expired"),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        ((1u64 << 53) - 2..(1u64 << 53) + 2).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        any::<String>().prop_map(Value::from),
        "[\\\"\u{0}-\u{1f}\u{7f}\u{2028} a-z0-9./:+=-]{0,16}".prop_map(Value::from),
        // Identity-number-shaped digits, plain and split.
        "0101001235[0-9]|01 01 00 12356|x01010012356".prop_map(Value::from),
        Just(json!("2023-05-08T09:30:00Z")),
        Just(json!("974760673")),
        Just(json!([1, "a"])),
        Just(json!({"org": "974760673", "system": "s"})),
        Just(json!({"a": {"b": "c"}})),
        Just(json!({})),
    ]
}

const KEYS: &[&str] = &[
    "id",
    "type",
    "message",
    "at",
    "reporter",
    "from",
    "to",
    "channel",
    "category",
    "content_digest",
    "expires_at",
    "refs",
    "from_system",
    "to_system",
    "system",
    "journal_ref",
    "by_role",
    "by",
    "reason",
    "error",
    "new_message",
    "outcome",
    "note",
    "notice",
    "status",
    "colour",
];
const NESTED: &[&str] = &["org", "system", "seq", "altinn", "x", "Ab", "colour"];

#[derive(Clone, Debug)]
enum Change {
    Set(&'static str, Value),
    Remove(&'static str),
    SetIn(&'static str, &'static str, Value),
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (prop::sample::select(KEYS), leaf()).prop_map(|(k, v)| Change::Set(k, v)),
        prop::sample::select(KEYS).prop_map(Change::Remove),
        (
            prop::sample::select(&["reporter", "refs"][..]),
            prop::sample::select(NESTED),
            leaf()
        )
            .prop_map(|(o, k, v)| Change::SetIn(o, k, v)),
    ]
}

/// Text-level changes the value cannot express.
#[derive(Clone, Debug)]
enum Text {
    Compact,
    Pretty,
    /// Every `e` written as the escape `\u0065`.
    Escaped,
    /// A key written twice.
    Duplicate,
    /// Cut short.
    Truncated(usize),
    Trailing(&'static str),
}

fn text() -> impl Strategy<Value = Text> {
    prop_oneof![
        4 => Just(Text::Compact),
        1 => Just(Text::Pretty),
        2 => Just(Text::Escaped),
        1 => Just(Text::Duplicate),
        1 => (0usize..400).prop_map(Text::Truncated),
        1 => prop::sample::select(&[" \n", "x", "{}", ","][..]).prop_map(Text::Trailing),
    ]
}

fn render(v: &Value, how: &Text) -> Vec<u8> {
    let compact = v.to_string();
    match how {
        Text::Compact => compact.into_bytes(),
        Text::Pretty => serde_json::to_vec_pretty(v).unwrap(),
        Text::Escaped => compact.replace('e', "\\u0065").into_bytes(),
        Text::Duplicate => compact
            .replacen('{', r#"{"message":"MSG-9","#, 1)
            .into_bytes(),
        Text::Truncated(n) => compact.as_bytes()[..(*n).min(compact.len())].to_vec(),
        Text::Trailing(t) => format!("{compact}{t}").into_bytes(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn one_pass_equals_the_general_path(
        seed in 0usize..14,
        changes in prop::collection::vec(change(), 0..3),
        how in text(),
        format in 1u8..=2,
    ) {
        let mut v = seeds().swap_remove(seed);
        for c in changes {
            match c {
                Change::Set(k, x) => v[k] = x,
                Change::Remove(k) => { v.as_object_mut().unwrap().remove(k); }
                Change::SetIn(o, k, x) => {
                    if !v[o].is_object() {
                        v[o] = json!({});
                    }
                    v[o][k] = x;
                }
            }
        }
        let bytes = render(&v, &how);
        prop_assert_eq!(Event::from_json_as(&bytes, format), general(&bytes, format));
    }
}

#[test]
fn every_seed_is_valid_and_takes_the_one_pass_reader() {
    for (i, v) in seeds().iter().enumerate() {
        let text = v.to_string();
        let object = Object::parse(text.as_bytes()).expect("event-shaped");
        let format = if v.get("note").is_some() { 1 } else { 2 };
        let event = Event::from_object(&object, format)
            .unwrap_or_else(|e| panic!("seed {i} is refused: {e}"));
        assert_eq!(
            event.canonical_bytes(),
            serde_json_canonicalizer::to_vec(v).unwrap(),
            "seed {i}"
        );
    }
}

#[test]
fn escapes_are_decoded_and_written_canonically() {
    let text = super::tests::sent()
        .to_string()
        .replace("MSG-1", r"MSG-\u0031\/x");
    let event = Event::from_json(text.as_bytes()).unwrap();
    assert_eq!(event.message(), "MSG-1/x");
    assert!(
        std::str::from_utf8(event.canonical_bytes())
            .unwrap()
            .contains(r#""message":"MSG-1/x""#)
    );
}
