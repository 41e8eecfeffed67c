//! Percent-encoding of URL components and decoding of query values, for the admin routes, the
//! tap and the clients that call Zoom or the admin listener.

/// Encodes everything but ASCII letters, digits and `-_.~` (RFC 3986's unreserved set), so
/// the result is safe in a path segment or a query value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes and `+` (a space) of a query value; refuses a bad escape or bytes
/// that are not UTF-8.
pub fn decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent escape in {s:?}"))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("query value {s:?} is not UTF-8"))
}

/// The decoded value of `key` in a query string, if present and well formed.
pub fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == key).then(|| decode(v).ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bad_escapes_are_refused() {
        let id = "a+b/c== d";
        assert_eq!(encode(id), "a%2Bb%2Fc%3D%3D%20d");
        assert_eq!(decode(&encode(id)).unwrap(), id);
        assert_eq!(decode("x+y").unwrap(), "x y");
        assert!(decode("%zz").is_err());
        assert!(decode("%ff").is_err(), "not UTF-8");
        assert_eq!(
            query_value("a=1&stream_id=s%2F1", "stream_id").as_deref(),
            Some("s/1")
        );
        assert_eq!(query_value("a=1", "b"), None);
    }
}
