//! JSON indented for people (`--metadata --pretty`), without parsing it into values: keys keep
//! their order and numbers their spelling, so what is shown is exactly what the registry
//! served, laid out. Pure: text in, text out; input that is not JSON is refused, not guessed at.

/// `json` with two-space indentation, one member or element a line.
pub fn indent(json: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(json).map_err(|_| "it is not UTF-8 text".to_string())?;
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth: usize = 0;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                loop {
                    match chars.next() {
                        Some('\\') => {
                            out.push('\\');
                            out.push(chars.next().ok_or("a string ends in an escape")?);
                        }
                        Some('"') => break,
                        Some(c) => out.push(c),
                        None => return Err("a string is not closed".into()),
                    }
                }
                out.push('"');
            }
            '{' | '[' => {
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                let close = if c == '{' { '}' } else { ']' };
                if chars.next_if_eq(&close).is_some() {
                    out.push(c);
                    out.push(close);
                    continue;
                }
                out.push(c);
                depth += 1;
                newline(&mut out, depth);
            }
            '}' | ']' => {
                depth = depth.checked_sub(1).ok_or("a bracket closes nothing")?;
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    if depth != 0 {
        return Err("a bracket is not closed".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_keeping_order_numbers_and_strings() {
        let json = br#"{"b":1.50,"a":[1,{"x":"a, \"b\": [c]"}],"e":{},"f":[ ]}"#;
        assert_eq!(
            indent(json).unwrap(),
            "{\n  \"b\": 1.50,\n  \"a\": [\n    1,\n    {\n      \"x\": \"a, \\\"b\\\": [c]\"\n    }\n  ],\n  \"e\": {},\n  \"f\": []\n}"
        );
        // Already indented input comes out the same way.
        let again = indent(indent(json).unwrap().as_bytes()).unwrap();
        assert_eq!(again, indent(json).unwrap());
    }

    #[test]
    fn refuses_what_is_not_json() {
        assert!(indent(b"{\"a\":1").is_err());
        assert!(indent(b"}").is_err());
        assert!(indent(b"\"open").is_err());
        assert!(indent(&[0xff]).is_err());
    }
}
