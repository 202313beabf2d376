//! Container ids become directory names under the state root, so they are
//! checked before anything touches the filesystem.

/// Longest id accepted. runc has no limit, but an id is a directory name
/// (at most 255 bytes on Linux) and a cgroup name, and libcontainer puts
/// sockets under `<root>/<id>/`. 200 leaves room for both; docker and
/// containerd ids are 64 characters.
pub const MAX_ID_LEN: usize = 200;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidId {
    #[error("container id is empty")]
    Empty,
    #[error("container id is longer than {MAX_ID_LEN} characters")]
    TooLong,
    #[error("container id {0:?} is not allowed: it names a directory")]
    Dots(String),
    #[error("container id {0:?} may only contain letters, digits, '_', '+', '-' and '.'")]
    Characters(String),
}

/// Accepts runc's id alphabet (`[A-Za-z0-9_+.-]`), rejecting `.` and `..`
/// and anything with a slash: an id is always exactly one path component.
pub fn validate(id: &str) -> Result<(), InvalidId> {
    if id.is_empty() {
        return Err(InvalidId::Empty);
    }
    if id.len() > MAX_ID_LEN {
        return Err(InvalidId::TooLong);
    }
    if id == "." || id == ".." {
        return Err(InvalidId::Dots(id.to_string()));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.'))
    {
        return Err(InvalidId::Characters(id.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_are_rejected() {
        for id in ["", ".", "..", "../x", "a/b", "/", "a b", "x\0y", "é", "a\n"] {
            assert!(validate(id).is_err(), "{id:?}");
        }
        assert_eq!(validate(&"a".repeat(201)), Err(InvalidId::TooLong));
        assert_eq!(validate(&"a".repeat(1000)), Err(InvalidId::TooLong));
    }

    #[test]
    fn ordinary_ids_are_accepted() {
        for id in [
            "a",
            "abc-123",
            "x.y",
            "a_b+c",
            &"f".repeat(64),
            &"a".repeat(200),
        ] {
            assert_eq!(validate(id), Ok(()), "{id}");
        }
    }
}
