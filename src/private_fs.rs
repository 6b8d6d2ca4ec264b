//! Files and directories only their owner reads: state, generated configs
//! and keys hold secrets, and the process's umask may leave new files
//! world-readable.

/// Creates `dir` (and its parents) readable by its owner only: it holds
/// the state (and, for the emulator, credentials).
pub fn private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// A new file (truncating one that is there) readable by its owner only.
pub fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // A file that was there keeps its mode through `open`.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    Ok(file)
}

/// Writes `contents` to `path` as a file only its owner reads.
pub fn write_private(path: &std::path::Path, contents: impl AsRef<[u8]>) -> std::io::Result<()> {
    use std::io::Write;
    private_file(path)?.write_all(contents.as_ref())
}
