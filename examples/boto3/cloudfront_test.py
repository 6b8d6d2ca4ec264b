"""A test suite's view of keyfront emulate: the same boto3 calls and the same
botocore CloudFrontSigner a product uses against AWS, pointed at the emulator
by the environment `keyfront emulate` prints. Run: python3 cloudfront_test.py
"""

import datetime
import http.server
import json
import os
import threading
import time
import unittest
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.exceptions
from botocore.config import Config
from botocore.signers import CloudFrontSigner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BUCKET = os.environ["KEYFRONT_BUCKET"]
CACHING_OPTIMIZED = "658327ea-f89d-4fab-a63d-7e88639e58f6"


def client(service):
    # Older botocore does not read AWS_ENDPOINT_URL_<SERVICE>: pass it on.
    return boto3.client(
        service,
        endpoint_url=os.environ["AWS_ENDPOINT_URL_" + service.upper()],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def fetch(url, method="GET", headers=None):
    """(status, headers, body) of a request made with urllib, as a product would."""
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def error_code(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


def public_distribution(reference, bucket, origin_path):
    """A distribution's config: one bucket under `origin_path`, unsigned."""
    return {
        "CallerReference": reference,
        "Comment": "",
        "Enabled": True,
        "Origins": {
            "Quantity": 1,
            "Items": [{"Id": "o", "DomainName": bucket + ".s3.amazonaws.com", "OriginPath": origin_path,
                       "S3OriginConfig": {"OriginAccessIdentity": ""}}],
        },
        "DefaultCacheBehavior": {"TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all",
                                 "CachePolicyId": CACHING_OPTIMIZED},
    }


class CloudFrontInTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s3 = client("s3")
        cls.cloudfront = client("cloudfront")
        cls.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = cls.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        run = uuid.uuid4().hex[:8]
        cls.public_key = cls.cloudfront.create_public_key(
            PublicKeyConfig={"CallerReference": run, "Name": "key-" + run, "EncodedKey": pem.decode(), "Comment": ""}
        )["PublicKey"]
        cls.key_group = cls.cloudfront.create_key_group(
            KeyGroupConfig={"Name": "group-" + run, "Items": [cls.public_key["Id"]], "Comment": "signers"}
        )["KeyGroup"]
        cls.prefix = "t" + run
        cls.put("docs/guide.pdf", b"%PDF-1.4 version one " * 100)
        cls.put("public/hello.txt", b"hello, unsigned world\n")
        origin = {
            "Id": "bucket",
            "DomainName": BUCKET + ".s3.us-east-1.amazonaws.com",
            "OriginPath": "/" + cls.prefix,
            "S3OriginConfig": {"OriginAccessIdentity": ""},
        }
        signed = {
            "TargetOriginId": "bucket",
            "ViewerProtocolPolicy": "allow-all",
            "TrustedKeyGroups": {"Enabled": True, "Quantity": 1, "Items": [cls.key_group["Id"]]},
            "CachePolicyId": CACHING_OPTIMIZED,
        }
        public = {
            "PathPattern": "/public/*",
            "TargetOriginId": "bucket",
            "ViewerProtocolPolicy": "allow-all",
            "CachePolicyId": CACHING_OPTIMIZED,
        }
        created = cls.cloudfront.create_distribution_with_tags(
            DistributionConfigWithTags={
                "DistributionConfig": {
                    "CallerReference": run,
                    "Comment": "keyfront example",
                    "Enabled": True,
                    "DefaultRootObject": "docs/guide.pdf",
                    "Origins": {"Quantity": 1, "Items": [origin]},
                    "DefaultCacheBehavior": signed,
                    "CacheBehaviors": {"Quantity": 1, "Items": [public]},
                },
                "Tags": {"Items": [{"Key": "team", "Value": "video"}]},
            }
        )
        cls.distribution = created["Distribution"]
        cls.base = "http://" + cls.distribution["DomainName"]
        cls.signer = CloudFrontSigner(
            cls.public_key["Id"], lambda message: cls.key.sign(message, padding.PKCS1v15(), hashes.SHA1())
        )

    @classmethod
    def put(cls, key, body):
        cls.s3.put_object(Bucket=BUCKET, Key=cls.prefix + "/" + key, Body=body, ContentType="application/pdf")

    def sign(self, path):
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        return self.signer.generate_presigned_url(self.base + path, date_less_than=expires)

    def test_a_created_distribution_is_deployed_and_serves_signed_urls(self):
        self.assertEqual(self.distribution["Status"], "InProgress")
        self.cloudfront.get_waiter("distribution_deployed").wait(Id=self.distribution["Id"])
        status, _, body = fetch(self.sign("/docs/guide.pdf"))
        self.assertEqual((status, body), (200, b"%PDF-1.4 version one " * 100))
        status, headers, body = fetch(self.sign("/docs/guide.pdf"), method="HEAD")
        self.assertEqual((status, headers["Content-Length"], body), (200, "2100", b""))
        status, _, body = fetch(self.sign("/docs/guide.pdf"), headers={"Range": "bytes=5-7"})
        self.assertEqual((status, body), (206, b"1.4"))
        status, _, body = fetch(self.sign("/"))
        self.assertEqual((status, body[:8]), (200, b"%PDF-1.4"), "the default root object")

    def test_without_a_signature_or_with_a_foreign_key_it_is_refused(self):
        status, _, body = fetch(self.base + "/docs/guide.pdf")
        self.assertEqual(status, 403)
        self.assertIn(b"MissingKey", body)
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = CloudFrontSigner(
            self.public_key["Id"], lambda message: stranger.sign(message, padding.PKCS1v15(), hashes.SHA1())
        )
        expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1)
        status, _, body = fetch(forged.generate_presigned_url(self.base + "/docs/guide.pdf", date_less_than=expires))
        self.assertEqual(status, 403)
        self.assertNotIn(b"%PDF", body)

    def test_a_public_behavior_serves_unsigned(self):
        status, _, body = fetch(self.base + "/public/hello.txt")
        self.assertEqual((status, body), (200, b"hello, unsigned world\n"))

    def test_an_invalidation_purges_what_the_edge_kept(self):
        self.put("docs/replaced.pdf", b"old")
        self.assertEqual(fetch(self.sign("/docs/replaced.pdf"))[2], b"old")
        self.put("docs/replaced.pdf", b"new")
        self.assertEqual(fetch(self.sign("/docs/replaced.pdf"))[2], b"old", "still cached")
        invalidation = self.cloudfront.create_invalidation(
            DistributionId=self.distribution["Id"],
            InvalidationBatch={"Paths": {"Quantity": 1, "Items": ["/docs/*"]}, "CallerReference": str(time.time())},
        )["Invalidation"]
        self.cloudfront.get_waiter("invalidation_completed").wait(
            DistributionId=self.distribution["Id"], Id=invalidation["Id"]
        )
        self.assertEqual(fetch(self.sign("/docs/replaced.pdf"))[2], b"new")

    def test_etags_change_with_every_change_and_guard_updates(self):
        cloudfront, identifier = self.cloudfront, self.distribution["Id"]
        read = cloudfront.get_distribution_config(Id=identifier)
        self.assertEqual(read["ETag"], cloudfront.get_distribution(Id=identifier)["ETag"], "the same ETag on every read")
        config = read["DistributionConfig"]
        config["Comment"] = "changed"
        updated = cloudfront.update_distribution(Id=identifier, IfMatch=read["ETag"], DistributionConfig=config)
        self.assertNotEqual(updated["ETag"], read["ETag"])
        self.assertEqual(updated["Distribution"]["DistributionConfig"]["Comment"], "changed")
        self.assertEqual(
            error_code(cloudfront.update_distribution, Id=identifier, IfMatch=read["ETag"], DistributionConfig=config),
            "PreconditionFailed",
        )
        self.assertEqual(
            error_code(cloudfront.delete_distribution, Id=identifier, IfMatch=updated["ETag"]),
            "DistributionNotDisabled",
        )
        self.assertEqual(
            error_code(cloudfront.delete_key_group, Id=self.key_group["Id"], IfMatch=self.key_group_etag()),
            "ResourceInUse",
        )
        self.assertEqual(
            error_code(cloudfront.delete_public_key, Id=self.public_key["Id"], IfMatch=self.public_key_etag()),
            "PublicKeyInUse",
        )
        self.assertEqual(error_code(cloudfront.get_distribution, Id="ENOSUCHTHING00"), "NoSuchDistribution")
        tags = cloudfront.list_tags_for_resource(Resource=self.distribution["ARN"])["Tags"]["Items"]
        self.assertEqual(tags, [{"Key": "team", "Value": "video"}])
        listed = cloudfront.list_distributions()["DistributionList"]
        self.assertIn(identifier, [item["Id"] for item in listed["Items"]])

    def test_a_bucket_the_suite_creates_is_served(self):
        s3, bucket = self.s3, "suite-" + self.prefix
        s3.create_bucket(Bucket=bucket)
        self.assertEqual(error_code(s3.create_bucket, Bucket=bucket), "BucketAlreadyOwnedByYou")
        self.assertIn(bucket, [listed["Name"] for listed in s3.list_buckets()["Buckets"]])
        s3.put_object(Bucket=bucket, Key="site/index.html", Body=b"<h1>the suite's own bucket</h1>", ContentType="text/html")
        created = self.cloudfront.create_distribution(
            DistributionConfig=public_distribution("own-bucket-" + self.prefix, bucket, "")
        )["Distribution"]
        status, headers, body = fetch("http://" + created["DomainName"] + "/site/index.html")
        self.assertEqual((status, headers["Content-Type"], body), (200, "text/html", b"<h1>the suite's own bucket</h1>"))
        self.assertEqual(error_code(s3.delete_bucket, Bucket=bucket), "BucketNotEmpty")
        s3.delete_object(Bucket=bucket, Key="site/index.html")
        s3.delete_bucket(Bucket=bucket)
        self.assertNotIn(bucket, [listed["Name"] for listed in s3.list_buckets()["Buckets"]])
        self.assertEqual(error_code(s3.delete_bucket, Bucket=BUCKET), "AccessDenied", "the emulator's own bucket stays")

    def test_an_application_on_loopback_is_a_custom_origin(self):
        seen = []

        class Application(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                seen.append((self.path, self.headers))
                body = b'{"hello": "from the application"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=60")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Application)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.shutdown)
        config = public_distribution("app-" + self.prefix, BUCKET, "")
        config["Origins"]["Items"] = [{
            "Id": "app",
            "DomainName": "127.0.0.1",
            "OriginPath": "/api",
            "CustomHeaders": {"Quantity": 1, "Items": [{"HeaderName": "X-Origin-Verify", "HeaderValue": "from-cdn"}]},
            "CustomOriginConfig": {"HTTPPort": server.server_address[1], "HTTPSPort": 443,
                                   "OriginProtocolPolicy": "http-only"},
        }]
        config["DefaultCacheBehavior"]["TargetOriginId"] = "app"
        created = self.cloudfront.create_distribution(DistributionConfig=config)["Distribution"]
        url = "http://" + created["DomainName"] + "/v1/hello"
        status, headers, body = fetch(url, headers={"Authorization": "Bearer viewer"})
        self.assertEqual((status, body), (200, b'{"hello": "from the application"}'))
        path, sent = seen[0]
        self.assertEqual((path, sent.get("X-Origin-Verify")), ("/api/v1/hello", "from-cdn"))
        self.assertNotIn("Authorization", sent, "the viewer's credentials stay at the edge")
        for _ in range(50):
            if fetch(url)[1]["X-Cache"] == "Hit from keyfront":
                break
            time.sleep(0.1)
        asked = len(seen)
        self.assertEqual(fetch(url)[2], b'{"hello": "from the application"}')
        self.assertEqual(len(seen), asked, "a hit asks the application nothing")
        config["Origins"]["Items"][0]["CustomOriginConfig"]["OriginProtocolPolicy"] = "sometimes"
        config["CallerReference"] = "bad-app-" + self.prefix
        self.assertEqual(error_code(self.cloudfront.create_distribution, DistributionConfig=config), "InvalidArgument")

    def test_a_function_serves_directory_urls_from_their_index(self):
        cloudfront, name = self.cloudfront, "index-" + self.prefix
        config = {"Comment": "directory URLs", "Runtime": "cloudfront-js-2.0"}
        code = (b"function handler(event) { var r = event.request;"
                b" if (r.uri.endsWith('/')) { r.uri += 'index.html'; } return r; }")
        created = cloudfront.create_function(Name=name, FunctionConfig=config, FunctionCode=code)
        self.assertEqual(created["FunctionSummary"]["FunctionMetadata"]["Stage"], "DEVELOPMENT")
        got = cloudfront.get_function(Name=name)["FunctionCode"]
        self.assertEqual(got.read() if hasattr(got, "read") else got, code)
        event = {"version": "1.0", "context": {"eventType": "viewer-request"}, "viewer": {"ip": "192.0.2.1"},
                 "request": {"method": "GET", "uri": "/guide/", "querystring": {}, "headers": {}, "cookies": {}}}
        tested = cloudfront.test_function(Name=name, IfMatch=created["ETag"], Stage="DEVELOPMENT",
                                          EventObject=json.dumps(event).encode())["TestResult"]
        self.assertEqual(json.loads(tested["FunctionOutput"])["uri"], "/guide/index.html")
        updated = cloudfront.update_function(Name=name, IfMatch=created["ETag"], FunctionConfig=config, FunctionCode=code)
        self.assertNotEqual(updated["ETag"], created["ETag"])
        published = cloudfront.publish_function(Name=name, IfMatch=updated["ETag"])["FunctionSummary"]
        self.assertEqual(published["FunctionMetadata"]["Stage"], "LIVE")
        self.assertIn(name, [f["Name"] for f in cloudfront.list_functions(Stage="LIVE")["FunctionList"]["Items"]])

        self.put("guide/index.html", b"<h1>the guide</h1>")
        distribution = public_distribution("function-" + self.prefix, BUCKET, "/" + self.prefix)
        distribution["DefaultCacheBehavior"]["FunctionAssociations"] = {
            "Quantity": 1,
            "Items": [{"FunctionARN": published["FunctionMetadata"]["FunctionARN"], "EventType": "viewer-request"}],
        }
        created_distribution = cloudfront.create_distribution(DistributionConfig=distribution)["Distribution"]
        status, _, body = fetch("http://" + created_distribution["DomainName"] + "/guide/")
        self.assertEqual((status, body), (200, b"<h1>the guide</h1>"))
        etag = cloudfront.describe_function(Name=name)["ETag"]
        self.assertEqual(error_code(cloudfront.delete_function, Name=name, IfMatch=etag), "FunctionInUse")
        self.assertEqual(error_code(cloudfront.create_function, Name="big-" + self.prefix, FunctionConfig=config,
                                    FunctionCode=b"function handler(e) { return e.request; }" + b" " * 10240),
                         "FunctionSizeLimitExceeded")

    def test_hostile_functions_and_policies_get_cloudfronts_answers(self):
        cloudfront = self.cloudfront
        config = {"Comment": "hostile", "Runtime": "cloudfront-js-2.0"}
        event = {"version": "1.0", "context": {"eventType": "viewer-request"}, "viewer": {"ip": "192.0.2.1"},
                 "request": {"method": "GET", "uri": "/", "querystring": {}, "headers": {}, "cookies": {}}}
        for name, code, error in [
            ("loop", b"function handler(e) { while (true) {} }", "compute budget"),
            ("throw", b"function handler(e) { throw new Error('boom'); }", "boom"),
            ("fs", b"function handler(e) { require('fs'); return e.request; }", "Cannot find module 'fs'"),
            ("garbage", b"function handler(e) { return 42; }", "invalid"),
        ]:
            created = cloudfront.create_function(Name=name + "-" + self.prefix, FunctionConfig=config, FunctionCode=code)
            tested = cloudfront.test_function(Name=name + "-" + self.prefix, IfMatch=created["ETag"],
                                              EventObject=json.dumps(event).encode())["TestResult"]
            self.assertIn(error, tested["FunctionErrorMessage"], name)
            self.assertNotIn("FunctionOutput", {k: v for k, v in tested.items() if v}, name)
        self.assertEqual(
            error_code(cloudfront.create_function, Name="syntax-" + self.prefix, FunctionConfig=config,
                       FunctionCode=b"function handler(e) {"), "InvalidArgument")

        def cache_policy(name, ttls=(0, 60, 300), headers=None):
            return {"Name": name + self.prefix, "MinTTL": ttls[0], "DefaultTTL": ttls[1], "MaxTTL": ttls[2],
                    "ParametersInCacheKeyAndForwardedToOrigin": {
                        "EnableAcceptEncodingGzip": False,
                        "HeadersConfig": headers or {"HeaderBehavior": "none"},
                        "CookiesConfig": {"CookieBehavior": "none"},
                        "QueryStringsConfig": {"QueryStringBehavior": "none"}}}
        for hostile in [cache_policy("ttl", ttls=(600, 60, 300)),
                        cache_policy("all-headers", headers={"HeaderBehavior": "allViewer"}),
                        cache_policy("unnamed", headers={"HeaderBehavior": "whitelist"})]:
            self.assertEqual(error_code(cloudfront.create_cache_policy, CachePolicyConfig=hostile),
                             "InvalidArgument", hostile["Name"])
        self.assertEqual(error_code(cloudfront.create_cache_policy, CachePolicyConfig=cache_policy("x") | {
            "Name": "Managed-CachingOptimized"}), "CachePolicyAlreadyExists")
        self.assertEqual(error_code(cloudfront.create_origin_request_policy, OriginRequestPolicyConfig={
            "Name": "unnamed" + self.prefix,
            "HeadersConfig": {"HeaderBehavior": "whitelist"},
            "CookiesConfig": {"CookieBehavior": "none"},
            "QueryStringsConfig": {"QueryStringBehavior": "none"}}), "InvalidArgument")
        self.assertEqual(error_code(cloudfront.create_response_headers_policy, ResponseHeadersPolicyConfig={
            "Name": "framing" + self.prefix,
            "CustomHeadersConfig": {"Quantity": 1, "Items": [
                {"Header": "Content-Length", "Value": "0", "Override": True}]}}), "InvalidArgument")
        self.assertEqual(error_code(cloudfront.create_key_value_store, Name="no spaces"), "InvalidArgument")

    def key_group_etag(self):
        return self.cloudfront.get_key_group(Id=self.key_group["Id"])["ETag"]

    def public_key_etag(self):
        return self.cloudfront.get_public_key(Id=self.public_key["Id"])["ETag"]

    def test_z_disabled_then_deleted_it_serves_nothing(self):
        cloudfront = self.cloudfront
        created = cloudfront.create_distribution(
            DistributionConfig=public_distribution("short-lived-" + self.prefix, BUCKET, "/" + self.prefix)
        )
        identifier, base = created["Distribution"]["Id"], "http://" + created["Distribution"]["DomainName"]
        self.assertEqual(fetch(base + "/public/hello.txt")[0], 200)
        read = cloudfront.get_distribution_config(Id=identifier)
        read["DistributionConfig"]["Enabled"] = False
        disabled = cloudfront.update_distribution(Id=identifier, IfMatch=read["ETag"], DistributionConfig=read["DistributionConfig"])
        self.assertEqual(fetch(base + "/public/hello.txt")[0], 403, "a disabled distribution serves nothing")
        cloudfront.get_waiter("distribution_deployed").wait(Id=identifier)
        cloudfront.delete_distribution(Id=identifier, IfMatch=disabled["ETag"])
        self.assertEqual(error_code(cloudfront.get_distribution, Id=identifier), "NoSuchDistribution")
        self.assertEqual(fetch(base + "/public/hello.txt")[0], 403, "nor a deleted one")


if __name__ == "__main__":
    unittest.main(verbosity=2)
