//! Removing credentials from text before it is shown anywhere (DESIGN §6).

/// Masks credentials in free text: the password of `scheme://user:password@host` URLs,
/// `password=…` / `pwd=…` / `secret=…` / `token=…` key-value pairs, and `Bearer`/`Basic` tokens.
///
/// ```
/// use onex_core::sanitize::sanitize;
/// assert_eq!(sanitize("postgres://app:s3cret@db/x"), "postgres://app:***@db/x");
/// assert_eq!(sanitize("host=db password=s3cret"), "host=db password=***");
/// assert_eq!(sanitize("Authorization: Bearer abc.def"), "Authorization: Bearer ***");
/// ```
pub fn sanitize(text: &str) -> String {
    let masked = mask_url_passwords(text);
    let masked = mask_pairs(&masked);
    mask_auth_schemes(&masked)
}

/// Masks the password of every `scheme://user:password@` in `text`.
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // userinfo ends at the first '@' before any '/', whitespace or end of authority.
        let auth_end = tail.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..auth_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                out.push_str(&userinfo[..colon]);
                out.push_str(":***");
                out.push_str(&authority[at..]);
                rest = &tail[auth_end..];
                continue;
            }
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

const SECRET_KEYS: [&str; 8] = ["password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "sasl.password"];

fn mask_pairs(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < bytes.len() {
        let mut matched = None;
        for key in SECRET_KEYS {
            if lower[i..].starts_with(key) {
                let after = i + key.len();
                let boundary_before = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
                if boundary_before && after < bytes.len() && (bytes[after] == b'=' || bytes[after] == b':') {
                    matched = Some(after + 1);
                    break;
                }
            }
        }
        if let Some(value_start) = matched {
            let mut s = value_start;
            while s < bytes.len() && bytes[s] == b' ' {
                s += 1;
            }
            let end = text[s..]
                .find(|c: char| c.is_whitespace() || c == '&' || c == ';' || c == ',' || c == '"' || c == '\'')
                .map(|e| s + e)
                .unwrap_or(text.len());
            out.push_str(&text[i..s]);
            if end > s {
                out.push_str("***");
            }
            i = end;
        } else {
            let ch = text[i..].chars().next().expect("in bounds");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn mask_auth_schemes(text: &str) -> String {
    let mut out = text.to_string();
    for scheme in ["Bearer ", "Basic ", "bearer ", "basic "] {
        let mut search_from = 0;
        while let Some(pos) = out[search_from..].find(scheme) {
            let start = search_from + pos + scheme.len();
            let end = out[start..].find(|c: char| c.is_whitespace() || c == '"' || c == ',').map(|e| start + e).unwrap_or(out.len());
            if end > start && &out[start..end] != "***" {
                out.replace_range(start..end, "***");
            }
            search_from = start + 3.min(out.len() - start);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_urls_pairs_and_tokens() {
        assert_eq!(sanitize("redis://:pw@127.0.0.1:6379"), "redis://:***@127.0.0.1:6379");
        assert_eq!(sanitize("http://a@b/c"), "http://a@b/c");
        assert_eq!(sanitize("no secrets here"), "no secrets here");
        assert_eq!(sanitize("kafka://h:1?sasl.password=x&a=b"), "kafka://h:1?sasl.password=***&a=b");
        assert_eq!(sanitize("PASSWORD: hunter2 next"), "PASSWORD: *** next");
        assert_eq!(sanitize("x://u:p@h and y://v:q@i"), "x://u:***@h and y://v:***@i");
        assert!(!sanitize("Authorization: Basic dXNlcjpwYXNz").contains("dXNl"));
        assert_eq!(sanitize("ünïcode password=ß ok"), "ünïcode password=*** ok");
    }
}
