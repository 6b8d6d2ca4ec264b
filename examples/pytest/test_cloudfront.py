"""A test suite as a product writes one, with the keyfront wheel installed:
its pytest plugin's `cloudfront` fixture runs `keyfront emulate` for the
session, so CloudFront and S3 calls, signed URLs and the edge are real.
Run: examples/pytest/run (builds the wheel, installs it in a fresh
virtualenv, runs this suite).
"""

import datetime
import urllib.error
import urllib.request
import uuid

from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def distribution(bucket, prefix, behavior=None):
    default = {"TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all",
               "CachePolicyId": "658327ea-f89d-4fab-a63d-7e88639e58f6"}
    default.update(behavior or {})
    return {
        "CallerReference": uuid.uuid4().hex, "Comment": "", "Enabled": True,
        "Origins": {"Quantity": 1, "Items": [{"Id": "o", "DomainName": bucket + ".s3.amazonaws.com",
                                              "OriginPath": "/" + prefix,
                                              "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
        "DefaultCacheBehavior": default,
    }


def test_a_distribution_serves_what_the_bucket_holds(cloudfront):
    cloudfront.s3.put_object(Bucket=cloudfront.bucket, Key="public/hello.txt", Body=b"hello from pytest")
    created = cloudfront.cloudfront.create_distribution(DistributionConfig=distribution(cloudfront.bucket, "public"))
    domain = created["Distribution"]["DomainName"]
    assert fetch("http://" + domain + "/hello.txt") == (200, b"hello from pytest")
    assert fetch("http://" + domain + "/missing.txt")[0] == 404


def test_a_signed_behavior_serves_signed_urls_only(cloudfront):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    public_key = cloudfront.cloudfront.create_public_key(PublicKeyConfig={
        "CallerReference": uuid.uuid4().hex, "Name": "pytest-" + uuid.uuid4().hex[:8], "EncodedKey": pem.decode()})
    key_id = public_key["PublicKey"]["Id"]
    group = cloudfront.cloudfront.create_key_group(KeyGroupConfig={
        "Name": "pytest-" + uuid.uuid4().hex[:8], "Items": [key_id]})["KeyGroup"]["Id"]
    cloudfront.s3.put_object(Bucket=cloudfront.bucket, Key="private/report.pdf", Body=b"%PDF-1.7 secret")
    created = cloudfront.cloudfront.create_distribution(DistributionConfig=distribution(cloudfront.bucket, "private", {
        "TrustedKeyGroups": {"Enabled": True, "Quantity": 1, "Items": [group]}}))
    url = "http://" + created["Distribution"]["DomainName"] + "/report.pdf"
    status, body = fetch(url)
    assert status == 403 and b"PDF" not in body
    signer = CloudFrontSigner(key_id, lambda message: key.sign(message, padding.PKCS1v15(), hashes.SHA1()))
    expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)
    assert fetch(signer.generate_presigned_url(url, date_less_than=expires)) == (200, b"%PDF-1.7 secret")


def test_the_fixture_is_one_emulator_for_the_session(cloudfront):
    listed = cloudfront.cloudfront.list_distributions()["DistributionList"]
    assert listed["Quantity"] >= 1, "the other tests' distributions are still there"
    assert cloudfront.edge.startswith("http://127.0.0.1:")
