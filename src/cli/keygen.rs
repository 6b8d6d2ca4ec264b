//! `keyfront keygen`: a new key pair and its CloudFront-shaped id.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;

use super::CliError;
use crate::auth::{KeyAlgorithm, PrivateKey};

#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// rsa (2048 bits, CloudFront's usual key) or ecdsa (P-256).
    #[arg(long, default_value = "rsa")]
    algorithm: KeyAlgorithm,
    /// Where to write the private key (PKCS#1 for RSA, PKCS#8 for EC), mode 0600.
    #[arg(long, default_value = "private_key.pem")]
    private_key: PathBuf,
    /// Where to write the public key (SubjectPublicKeyInfo, what CloudFront's console takes).
    #[arg(long, default_value = "public_key.pem")]
    public_key: PathBuf,
}

pub fn run(args: KeygenArgs) -> Result<ExitCode, CliError> {
    let key = PrivateKey::generate(args.algorithm);
    let public = key.public_key();
    write_new(&args.private_key, &key.to_pem(), 0o600)?;
    write_new(&args.public_key, &public.to_pem(), 0o644)?;
    println!("key id:      {}", public.derived_key_id());
    println!("algorithm:   {}", public.describe());
    println!("private key: {}", args.private_key.display());
    println!("public key:  {}", args.public_key.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes a file that must not exist yet: keys are never overwritten.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CliError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}
