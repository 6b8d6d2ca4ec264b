#!/usr/bin/env python3
"""Writes tests/vectors/aws_signer.json with URLs signed by AWS's own signers.

Needs awscli v1 (its `aws cloudfront sign`), botocore and cryptography:
    pip install awscli botocore cryptography
Run from the repository root: python3 tests/vectors/generate.py

RSA PKCS#1 v1.5 signatures are deterministic, so `keyfront sign` must
reproduce every RSA vector byte for byte. ECDSA signatures are randomized:
those vectors are for `keyfront verify` only.
"""
import json
import subprocess
from datetime import datetime, timezone

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding

KEYS = "tests/vectors/keys"
KEY_ID = "K2JCJMDEHXQW5F"
EXPIRES = "2030-01-01T00:00:00+00:00"
START = "2029-06-01T00:00:00+00:00"


def load(name):
    with open(f"{KEYS}/{name}", "rb") as f:
        return serialization.load_pem_private_key(f.read(), password=None)


def rsa_signer(name, algorithm):
    key = load(name)
    return lambda message: key.sign(message, padding.PKCS1v15(), algorithm)


def ec_signer(name, algorithm):
    key = load(name)
    return lambda message: key.sign(message, ec.ECDSA(algorithm))


def stamp(text):
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def aws_cli(url, date_less_than, date_greater_than=None, ip_address=None):
    command = ["aws", "cloudfront", "sign", "--url", url, "--key-pair-id", KEY_ID,
               "--private-key", f"file://{KEYS}/rsa_pkcs1.pem", "--date-less-than", date_less_than]
    if date_greater_than:
        command += ["--date-greater-than", date_greater_than]
    if ip_address:
        command += ["--ip-address", ip_address]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip()


def botocore_sign(signer_fn, url, resource, date_less_than, date_greater_than, ip_address, sha256):
    signer = CloudFrontSigner(KEY_ID, signer_fn)
    if resource is None and date_greater_than is None and ip_address is None:
        signed = signer.generate_presigned_url(url, date_less_than=stamp(date_less_than))
    else:
        policy = signer.build_policy(resource or url, stamp(date_less_than),
                                     date_greater_than=stamp(date_greater_than) if date_greater_than else None,
                                     ip_address=ip_address)
        signed = signer.generate_presigned_url(url, policy=policy)
    # CloudFront's documented SHA-256 form: the same URL plus Hash-Algorithm=SHA256, last.
    return signed + "&Hash-Algorithm=SHA256" if sha256 else signed


def main():
    vectors = []

    def add(name, generator, url, key_file, public_key, signed_url, deterministic,
            resource=None, start=None, ip=None, hash_algorithm="sha1"):
        vectors.append({
            "name": name, "generator": generator, "url": url, "policy_resource": resource,
            "key_pair_id": KEY_ID, "private_key": f"{KEYS}/{key_file}", "public_key": f"{KEYS}/{public_key}",
            "date_less_than": EXPIRES, "date_greater_than": start, "ip_address": ip,
            "hash_algorithm": hash_algorithm, "deterministic": deterministic, "signed_url": signed_url,
        })

    cli_cases = [
        ("cli canned", "https://d111111abcdef8.cloudfront.net/videos/intro.mp4", None, None),
        ("cli canned with query", "https://d111111abcdef8.cloudfront.net/docs/a%20b.pdf?lang=en&v=2", None, None),
        ("cli custom wildcard with start", "https://d111111abcdef8.cloudfront.net/videos/*", START, None),
        ("cli custom ip", "https://d111111abcdef8.cloudfront.net/private/report.pdf", None, "192.0.2.0/24"),
        ("cli custom bare ip", "https://d111111abcdef8.cloudfront.net/private/report.pdf", None, "198.51.100.7"),
        ("cli custom everything", "https://d111111abcdef8.cloudfront.net/*", START, "203.0.113.0/24"),
    ]
    for name, url, start, ip in cli_cases:
        add(name, "aws-cli " + subprocess.run(["aws", "--version"], capture_output=True, text=True).stdout.split()[0],
            url, "rsa_pkcs1.pem", "rsa_public.pem", aws_cli(url, EXPIRES, start, ip), True, start=start, ip=ip)

    boto_cases = [
        ("botocore canned pkcs8", "rsa_pkcs8.pem", "https://cdn.example.com/a/b.jpg", None, None, None),
        ("botocore wildcard resource", "rsa_pkcs8.pem", "https://cdn.example.com/folder/file.mp4?x=1",
         "https://cdn.example.com/folder/*", None, None),
        ("botocore question mark wildcard", "rsa_pkcs8.pem", "https://cdn.example.com/part1.ts",
         "https://cdn.example.com/part?.ts", None, None),
        ("botocore any scheme", "rsa_pkcs8.pem", "http://cdn.example.com/x", "*://cdn.example.com/*", None, None),
    ]
    version = "botocore " + __import__("botocore").__version__
    for name, key, url, resource, start, ip in boto_cases:
        for sha256 in (False, True):
            algorithm = hashes.SHA256() if sha256 else hashes.SHA1()
            suffix = " sha256" if sha256 else ""
            add(name + suffix, version, url, key, "rsa_public.pem",
                botocore_sign(rsa_signer(key, algorithm), url, resource, EXPIRES, start, ip, sha256), True,
                resource=resource, start=start, ip=ip, hash_algorithm="sha256" if sha256 else "sha1")

    for key in ("ec_sec1.pem", "ec_pkcs8.pem"):
        for sha256 in (False, True):
            algorithm = hashes.SHA256() if sha256 else hashes.SHA1()
            url = "https://cdn.example.com/ec/" + key
            add(f"botocore ecdsa {key}{' sha256' if sha256 else ''}", version, url, key, "ec_public.pem",
                botocore_sign(ec_signer(key, algorithm), url, "https://cdn.example.com/ec/*", EXPIRES, START, None, sha256),
                False, resource="https://cdn.example.com/ec/*", start=START,
                hash_algorithm="sha256" if sha256 else "sha1")

    with open("tests/vectors/aws_signer.json", "w") as f:
        json.dump(vectors, f, indent=2)
        f.write("\n")
    print(f"wrote {len(vectors)} vectors")


if __name__ == "__main__":
    main()
