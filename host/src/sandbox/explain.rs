//! Guest messages made readable on the host: the sandbox's error numbers named, and the
//! one-line reason of a trap with the limit and the pipeline.toml key that caused it.
//!
//! A guest's I/O errors carry WASI error numbers, which differ from the host's (`os error
//! 44` is WASI's ENOENT, Linux's is 2). Every guest message that reaches an operator (log
//! lines, stdout and stderr, `err(..)` results, trap reports) goes through
//! [`explain_wasi_errors`], which names the number, and, for the errors a sandboxed plugin
//! meets when it looks outside its granted directories, says so.

use std::borrow::Cow;

/// WASI's error names (the `errno` of wasi-libc and WASI preview 1), by number.
const WASI_ERRNO: [&str; 77] = [
    "SUCCESS",
    "E2BIG",
    "EACCES",
    "EADDRINUSE",
    "EADDRNOTAVAIL",
    "EAFNOSUPPORT",
    "EAGAIN",
    "EALREADY",
    "EBADF",
    "EBADMSG",
    "EBUSY",
    "ECANCELED",
    "ECHILD",
    "ECONNABORTED",
    "ECONNREFUSED",
    "ECONNRESET",
    "EDEADLK",
    "EDESTADDRREQ",
    "EDOM",
    "EDQUOT",
    "EEXIST",
    "EFAULT",
    "EFBIG",
    "EHOSTUNREACH",
    "EIDRM",
    "EILSEQ",
    "EINPROGRESS",
    "EINTR",
    "EINVAL",
    "EIO",
    "EISCONN",
    "EISDIR",
    "ELOOP",
    "EMFILE",
    "EMLINK",
    "EMSGSIZE",
    "EMULTIHOP",
    "ENAMETOOLONG",
    "ENETDOWN",
    "ENETRESET",
    "ENETUNREACH",
    "ENFILE",
    "ENOBUFS",
    "ENODEV",
    "ENOENT",
    "ENOEXEC",
    "ENOLCK",
    "ENOLINK",
    "ENOMEM",
    "ENOMSG",
    "ENOPROTOOPT",
    "ENOSPC",
    "ENOSYS",
    "ENOTCONN",
    "ENOTDIR",
    "ENOTEMPTY",
    "ENOTRECOVERABLE",
    "ENOTSOCK",
    "ENOTSUP",
    "ENOTTY",
    "ENXIO",
    "EOVERFLOW",
    "EOWNERDEAD",
    "EPERM",
    "EPIPE",
    "EPROTO",
    "EPROTONOSUPPORT",
    "EPROTOTYPE",
    "ERANGE",
    "EROFS",
    "ESPIPE",
    "ESRCH",
    "ESTALE",
    "ETIMEDOUT",
    "ETXTBSY",
    "EXDEV",
    "ENOTCAPABLE",
];

/// The name of WASI error number `n`, such as `ENOENT` for 44.
pub fn wasi_errno_name(n: u32) -> Option<&'static str> {
    WASI_ERRNO.get(n as usize).copied()
}

/// Errors a plugin meets when it reaches outside what the sandbox grants.
const SANDBOX_ERRNOS: [&str; 5] = ["ENOENT", "EACCES", "EPERM", "ENOTCAPABLE", "EROFS"];

/// What is added once to a message naming one of [`SANDBOX_ERRNOS`].
pub const SANDBOX_HINT: &str = " [in the sandbox a plugin sees only the directories pipeline.toml grants it ([[plugin.dir]]), at their guest paths, read-only where so granted; no network]";

/// The markers of an error number in guest messages: Rust's `(os error 44)`, Python's
/// `[Errno 44]`, C's and others' `errno 44`.
const MARKERS: [&str; 3] = ["os error ", "Errno ", "errno "];

/// `text` with each WASI error number it quotes named (`os error 44` becomes
/// `os error 44 = WASI ENOENT`), plus [`SANDBOX_HINT`] when one of them is an error of the
/// sandbox. Borrowed unchanged when it quotes none.
pub fn explain_wasi_errors(text: &str) -> Cow<'_, str> {
    if !MARKERS.iter().any(|m| text.contains(m)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 32);
    let mut sandbox = false;
    let mut rest = text;
    while let Some((at, marker)) = MARKERS
        .iter()
        .filter_map(|m| rest.find(m).map(|i| (i, *m)))
        .min_by_key(|(i, _)| *i)
    {
        let after = at + marker.len();
        let digits = rest[after..].bytes().take_while(u8::is_ascii_digit).count();
        out.push_str(&rest[..after + digits]);
        let name = rest[after..after + digits]
            .parse::<u32>()
            .ok()
            .and_then(wasi_errno_name);
        if let Some(name) = name.filter(|_| digits > 0) {
            out.push_str(" = WASI ");
            out.push_str(name);
            sandbox |= SANDBOX_ERRNOS.contains(&name);
        }
        rest = &rest[after + digits..];
    }
    out.push_str(rest);
    if sandbox {
        out.push_str(SANDBOX_HINT);
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasi_error_numbers_are_named_in_every_language_s_spelling() {
        assert_eq!(
            explain_wasi_errors("cannot open /etc/x: No such file or directory (os error 44)"),
            format!(
                "cannot open /etc/x: No such file or directory (os error 44 = WASI ENOENT){SANDBOX_HINT}"
            )
        );
        assert_eq!(
            explain_wasi_errors("[Errno 63] Operation not permitted: '/out/../x'"),
            format!("[Errno 63 = WASI EPERM] Operation not permitted: '/out/../x'{SANDBOX_HINT}")
        );
        assert_eq!(
            explain_wasi_errors("write failed: errno 51"),
            "write failed: errno 51 = WASI ENOSPC"
        );
        assert!(matches!(
            explain_wasi_errors("all fine"),
            Cow::Borrowed("all fine")
        ));
        assert_eq!(
            explain_wasi_errors("os error 999 and os error x"),
            "os error 999 and os error x"
        );
        assert_eq!(wasi_errno_name(76), Some("ENOTCAPABLE"));
    }
}
