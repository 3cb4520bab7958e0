//! Passwords out of messages: a connection string may reach an error, a log line or
//! an answer, its password never.

/// `text` with the secrets a database error may carry masked: the password of a URL
/// (`postgres://user:secret@host` → `postgres://user:***@host`) and `password=…` /
/// `PGPASSWORD=…` settings (`password=***`). For every message that may carry a
/// connection string: errors, log lines and, as a safety net, every API answer.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // URL passwords: `scheme://user:password@`.
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '>'))
            .unwrap_or(tail.len());
        // The last `@` of the word: a password may hold `/` or `@`; masking too much
        // of a URL is harmless.
        let authority = &tail[..end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    // Key-value settings.
    let lower = out.to_ascii_lowercase();
    let mut masked = String::with_capacity(out.len());
    let mut last = 0;
    let mut from = 0;
    while let Some(k) = lower[from..].find("password") {
        let start = from + k + "password".len();
        from = start;
        let after = &out[start..];
        let sep = after.len() - after.trim_start_matches([' ', '=', ':']).len();
        if sep == 0 || !after[..sep].contains(['=', ':']) {
            continue;
        }
        let value_start = start + sep;
        let value = &out[value_start..];
        let value_len = match value.chars().next() {
            Some(q @ ('\'' | '"')) => value[1..].find(q).map_or(value.len(), |e| e + 2),
            _ => value
                .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | ')'))
                .unwrap_or(value.len()),
        };
        if value_len == 0 {
            continue;
        }
        masked.push_str(&out[last..value_start]);
        masked.push_str("***");
        last = value_start + value_len;
        from = last;
    }
    masked.push_str(&out[last..]);
    masked
}
