//! Znode path rules, as ZooKeeper's `PathUtils.validatePath`.

use protocol::ErrorCode;

/// Checks `path` the way ZooKeeper does: absolute, no empty segment, no
/// trailing slash (except the root), no `.`/`..` segments, no null or
/// control characters. `sequential` allows a trailing slash, because the
/// server appends the suffix (a sequential child of "/a/" is "/a/0000000001").
pub fn validate(path: &str, sequential: bool) -> Result<(), ErrorCode> {
    let path = if sequential { format!("{path}1") } else { path.to_owned() };
    let bad = Err(ErrorCode::BadArguments);
    if path.is_empty() || !path.starts_with('/') {
        return bad;
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad;
    }
    for segment in path[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return bad;
        }
    }
    for c in path.chars() {
        let invalid = c == '\u{0}'
            || ('\u{1}'..='\u{1f}').contains(&c)
            || ('\u{7f}'..='\u{9f}').contains(&c)
            || ('\u{e000}'..='\u{f8ff}').contains(&c)
            || ('\u{fff0}'..='\u{ffff}').contains(&c);
        if invalid {
            return bad;
        }
    }
    Ok(())
}

/// The parent of a valid, non-root path.
pub fn parent(path: &str) -> &str {
    debug_assert!(path.len() > 1 && path.starts_with('/'));
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// The last segment of a valid, non-root path.
pub fn name(path: &str) -> &str {
    &path[path.rfind('/').map_or(0, |i| i + 1)..]
}

/// `child` joined to `parent`.
pub fn join(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Whether `path` is `ancestor` or lies below it.
pub fn is_within(path: &str, ancestor: &str) -> bool {
    ancestor == "/"
        || path == ancestor
        || (path.starts_with(ancestor) && path.as_bytes().get(ancestor.len()) == Some(&b'/'))
}

/// `path` and each of its ancestors up to the root, nearest first.
pub fn ancestors_and_self(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let cur = next?;
        next = if cur == "/" { None } else { Some(parent(cur)) };
        Some(cur)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_zookeeper() {
        for ok in ["/", "/a", "/a/b", "/a.b", "/zookeeper", "/a/.b", "/é"] {
            assert_eq!(validate(ok, false), Ok(()), "{ok}");
        }
        for bad in ["", "a", "/a/", "//", "/a//b", "/.", "/a/..", "/a/./b", "/a\u{0}", "/\u{1}"] {
            assert_eq!(validate(bad, false), Err(ErrorCode::BadArguments), "{bad:?}");
        }
        assert_eq!(validate("/a/", true), Ok(()));
        assert_eq!(validate("/a", true), Ok(()));
    }

    #[test]
    fn parents_and_names() {
        assert_eq!(parent("/a"), "/");
        assert_eq!(parent("/a/b/c"), "/a/b");
        assert_eq!(name("/a/b/c"), "c");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/a", "x"), "/a/x");
        assert!(is_within("/a/b", "/a"));
        assert!(!is_within("/ab", "/a"));
        assert!(is_within("/ab", "/"));
        assert_eq!(ancestors_and_self("/a/b").collect::<Vec<_>>(), vec!["/a/b", "/a", "/"]);
    }
}
