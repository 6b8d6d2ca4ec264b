//! `keyfront demo`: the whole CloudFront + S3 setup on loopback. A fresh key
//! pair, the embedded S3 origin with sample files uploaded through its S3 API,
//! the edge in front of it, and signed URLs, cookies and curl lines that work.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::CliError;
use super::serve::{load_config, run_edge};
use crate::auth::{HashAlgorithm, KeyAlgorithm, PolicySpec, PolicyTerms, PrivateKey, Signer};
use crate::origin::{Origin, put_object};
use crate::s3store::{self, BucketAccess, PortSharing};
use crate::server::ensure_free;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the keys, the config and the bucket live (created if missing).
    #[arg(long, default_value = "demo-data")]
    dir: PathBuf,
    /// The edge's address.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: SocketAddr,
    /// The embedded origin's address.
    #[arg(long, default_value = "127.0.0.1:9480")]
    origin_listen: SocketAddr,
    /// The admin listener's address (health, metrics, invalidations, reload).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin_listen: SocketAddr,
    /// The scheme and host viewers use (default: http:// and --listen); set it
    /// when the edge is reached through another name, as from outside a container.
    #[arg(long)]
    public_base_url: Option<String>,
}

impl DemoArgs {
    fn base_url(&self) -> String {
        self.public_base_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.listen))
            .trim_end_matches('/')
            .to_owned()
    }
}

const BUCKET: &str = "media";
const ACCESS_KEY: &str = "keyfront-demo";

fn io(path: &std::path::Path) -> impl Fn(std::io::Error) -> CliError + '_ {
    move |source| CliError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A 4-second 320x180 H.264/AAC test pattern with its index up front, made
/// with `ffmpeg -f lavfi -i testsrc2=duration=4:size=320x180:rate=24 -f lavfi
/// -i sine=frequency=440:duration=4 -c:v libx264 -crf 32 -pix_fmt yuv420p
/// -c:a aac -b:a 32k -movflags +faststart`.
const SAMPLE_VIDEO: &[u8] = include_bytes!("../../assets/sample.mp4");

/// Sample files: an SVG image, a one-page PDF, a short video, and 8 MiB of
/// patterned bytes to seek in with Range requests.
fn samples() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let svg = br##"<svg xmlns="http://www.w3.org/2000/svg" width="320" height="120"><rect width="320" height="120" fill="#1d3557"/><text x="24" y="70" font-size="32" fill="#f1faee" font-family="sans-serif">keyfront demo</text></svg>"##.to_vec();
    let large: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    vec![
        ("/images/logo.svg", "image/svg+xml", svg),
        (
            "/docs/guide.pdf",
            "application/pdf",
            minimal_pdf("keyfront serves this PDF through a signed URL."),
        ),
        ("/videos/sample.mp4", "video/mp4", SAMPLE_VIDEO.to_vec()),
        ("/videos/large.bin", "application/octet-stream", large),
        (
            "/public/hello.txt",
            "text/plain",
            b"hello from a public behavior: no signature needed\n".to_vec(),
        ),
    ]
}

/// A one-page PDF with a correct cross-reference table.
fn minimal_pdf(text: &str) -> Vec<u8> {
    let content = format!("BT /F1 18 Tf 72 720 Td ({text}) Tj ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_owned(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = String::from("%PDF-1.4\n");
    let mut offsets = Vec::new();
    for (i, object) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.push_str(&format!("{} 0 obj\n{object}\nendobj\n", i + 1));
    }
    let xref = pdf.len();
    pdf.push_str(&format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1));
    for offset in offsets {
        pdf.push_str(&format!("{offset:010} 00000 n \n"));
    }
    pdf.push_str(&format!(
        "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
        objects.len() + 1
    ));
    pdf.into_bytes()
}

pub fn run(args: DemoArgs) -> Result<ExitCode, CliError> {
    // Before anything is written: a demo still running from earlier would
    // otherwise take half of this one's uploads on its shared ports.
    ensure_free([args.listen, args.origin_listen, args.admin_listen]).map_err(CliError::Start)?;
    let dir = &args.dir;
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key = PrivateKey::generate(KeyAlgorithm::Rsa);
    let key_id = key.public_key().derived_key_id();
    let public_path = dir.join("public_key.pem");
    let private_path = dir.join("private_key.pem");
    std::fs::write(&public_path, key.public_key().to_pem()).map_err(io(&public_path))?;
    crate::private_fs::write_private(&private_path, key.to_pem()).map_err(io(&private_path))?;

    let secret = format!("demo-secret-{}", &key_id[1..9]);
    let access = BucketAccess {
        bucket: BUCKET.to_owned(),
        access_key_id: ACCESS_KEY.to_owned(),
        secret_access_key: secret.clone(),
        public_read: false,
        creates_buckets: false,
    };
    let origin_address =
        s3store::spawn(dir.join("store"), args.origin_listen, PortSharing::Exclusive, vec![access]).map_err(CliError::Store)?;
    let origin = Origin::embedded(origin_address, BUCKET, ACCESS_KEY, &secret);
    for (key, content_type, body) in samples() {
        let status = put_object(&origin, key, &[("content-type", content_type)], &body).map_err(io(dir))?;
        if status != 200 {
            return Err(CliError::bad("upload", key, format!("the embedded origin answered {status}")));
        }
    }

    let admin_token = format!("demo-admin-{:032x}", rand::random::<u128>());
    let config_path = dir.join("keyfront.yaml");
    let config_text = format!(
        "# Written by `keyfront demo`.\nlisten: {listen}\npublic_base_url: {base}\nadmin_listen: {admin}\nadmin_token: {admin_token}\nkey_groups:\n  demo:\n    - id: {key_id}\n      public_key: public_key.pem\norigins:\n  media:\n    type: s3\n    endpoint: http://{origin_address}\n    bucket: {BUCKET}\n    path_style: true\n    access_key_id: {ACCESS_KEY}\n    secret_access_key: {secret}\nbehaviors:\n  - path_pattern: /public/*\n    origin: media\n  - path_pattern: \"*\"\n    origin: media\n    trusted_key_groups: [demo]\n",
        listen = args.listen,
        base = args.base_url(),
        admin = args.admin_listen,
        admin_token = admin_token,
    );
    crate::private_fs::write_private(&config_path, config_text).map_err(io(&config_path))?;
    let config = load_config(&config_path)?;

    print_guide(&args, &key_id, key, &admin_token);
    run_edge(config, 2, false)
}

fn print_guide(args: &DemoArgs, key_id: &str, key: PrivateKey, admin_token: &str) {
    let base = args.base_url();
    let signer = Signer::new(key_id, key, HashAlgorithm::Sha1);
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        + 3600;
    let canned = signer.sign_url(&format!("{base}/docs/guide.pdf"), &PolicySpec::Canned { expires: in_an_hour });
    let folder = PolicyTerms {
        resource: Some(format!("{base}/videos/*")),
        date_less_than: in_an_hour,
        ..PolicyTerms::default()
    };
    let video = format!("{base}/videos/sample.mp4");
    let wildcard = signer.sign_url(&video, &PolicySpec::for_url(&video, &folder));
    let image = format!("{base}/images/logo.svg");
    let cookie_policy = PolicySpec::for_url(
        &image,
        &PolicyTerms {
            resource: Some(format!("{base}/images/*")),
            ..folder.clone()
        },
    );
    let cookies = signer
        .sign_cookies(&image, &cookie_policy)
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    println!(
        r#"
keyfront demo: the edge on {base}, the embedded S3 origin behind it, key id {key_id}
(keys, config and bucket under {dir}; every URL below is valid for one hour)

Canned policy URL for one file:
  {canned}
Custom policy URL covering {base}/videos/*:
  {wildcard}
Signed cookies covering {base}/images/*:
  Cookie: {cookies}

Open the video in a browser (it probes, then seeks with Range requests):
  {wildcard}

Try:
  curl -sS -o guide.pdf -w '%{{http_code}} %{{size_download}} bytes\n' '{canned}'
  curl -sS -I '{canned}'
  curl -sS -r 1000-1999 -o /dev/null -w '%{{http_code}} %{{size_download}} bytes\n' '{wildcard}'
  curl -sS -o /dev/null -w '%{{http_code}} %{{size_download}} bytes\n' -H 'Cookie: {cookies}' '{image}'
  curl -sS '{base}/public/hello.txt'
  curl -sS '{base}/docs/guide.pdf'                      # unsigned: 403 MissingKey
  {program} verify --url '{canned}' --key {key_id}={dir}/public_key.pem
  curl -sS http://{admin}/metrics | grep keyfront_requests_total
  KEYFRONT_ADMIN_TOKEN={admin_token} {program} invalidate --admin http://{admin} '/videos/*'

keyfront is serving; Ctrl-C stops it."#,
        // Absolute, so the printed lines work from any directory.
        dir = std::fs::canonicalize(&args.dir).unwrap_or_else(|_| args.dir.clone()).display(),
        admin = args.admin_listen,
        // The binary's own path: a newcomer has no `keyfront` on their PATH.
        program = std::env::current_exe().map_or_else(|_| "keyfront".to_owned(), |path| path.display().to_string()),
    );
}
