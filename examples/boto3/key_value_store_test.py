"""Key value stores from boto3, against keyfront emulate: the CloudFront API's
store operations, the data plane's key operations (boto3 signs them with
SigV4A, through awscrt: scripts/python-env makes an environment with it), and
a CloudFront Function reading its store while the edge serves.
Run: $(scripts/python-env) key_value_store_test.py
"""

import base64
import os
import time
import unittest
import urllib.parse
import urllib.request
import uuid

import boto3
import botocore.exceptions
from botocore.config import Config

BUCKET = os.environ["KEYFRONT_BUCKET"]
ACCOUNT = "123456789012"


def client(service, endpoint):
    return boto3.client(service, endpoint_url=endpoint,
                        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))


def data_plane():
    """The data plane's client. CloudFront's endpoint rules put the store's
    account in front of the endpoint's host (`123456789012.127.0.0.1`), a name
    loopback does not have: the account is taken off again before the request
    is signed, so the signature covers the host it is sent to."""
    kvs = client("cloudfront-keyvaluestore", os.environ["AWS_ENDPOINT_URL_CLOUDFRONT"])

    def to_loopback(request, **_):
        parts = urllib.parse.urlsplit(request.url)
        netloc = parts.netloc.removeprefix(ACCOUNT + ".")
        request.url = urllib.parse.urlunsplit(parts._replace(netloc=netloc))

    kvs.meta.events.register("before-sign.cloudfront-keyvaluestore", to_loopback)
    return kvs


def error_code(call, **kwargs):
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as error:
        return error.response["Error"]["Code"]
    raise AssertionError("the call succeeded")


def fetch(url):
    request = urllib.request.Request(url)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


ROUTER = """import cf from 'cloudfront';
const kvs = cf.kvs();
async function handler(event) {
    const request = event.request;
    if (await kvs.exists(request.uri)) {
        request.uri = await kvs.get(request.uri);
    }
    return request;
}
"""


class KeyValueStores(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cloudfront = client("cloudfront", os.environ["AWS_ENDPOINT_URL_CLOUDFRONT"])
        cls.s3 = client("s3", os.environ["AWS_ENDPOINT_URL_S3"])
        cls.kvs = data_plane()
        cls.run_id = uuid.uuid4().hex[:8]

    def store(self, name):
        store = self.cloudfront.create_key_value_store(Name=name + self.run_id, Comment="routes")["KeyValueStore"]
        self.assertEqual(store["Status"], "READY")
        return store

    def test_the_api_makes_describes_lists_updates_and_deletes_stores(self):
        store = self.store("lifecycle")
        name = store["Name"]
        described = self.cloudfront.describe_key_value_store(Name=name)
        self.assertEqual(described["KeyValueStore"]["ARN"], store["ARN"])
        listed = self.cloudfront.list_key_value_stores()["KeyValueStoreList"]["Items"]
        self.assertIn(name, [item["Name"] for item in listed])
        self.assertEqual(error_code(self.cloudfront.create_key_value_store, Name=name), "EntityAlreadyExists")
        self.assertEqual(error_code(self.cloudfront.update_key_value_store, Name=name, Comment="x", IfMatch="EWRONG"),
                         "PreconditionFailed")
        updated = self.cloudfront.update_key_value_store(Name=name, Comment="renamed", IfMatch=described["ETag"])
        self.assertEqual(updated["KeyValueStore"]["Comment"], "renamed")
        self.cloudfront.delete_key_value_store(Name=name, IfMatch=updated["ETag"])
        self.assertEqual(error_code(self.cloudfront.describe_key_value_store, Name=name), "EntityNotFound")

    def test_the_data_plane_changes_keys_under_the_stores_etag(self):
        arn = self.store("keys")["ARN"]
        etag = self.kvs.describe_key_value_store(KvsARN=arn)["ETag"]
        put = self.kvs.put_key(KvsARN=arn, Key="/old", Value="/new.txt", IfMatch=etag)
        self.assertEqual(put["ItemCount"], 1)
        self.assertEqual(error_code(self.kvs.put_key, KvsARN=arn, Key="/old", Value="/lost", IfMatch=etag),
                         "ConflictException")
        self.assertEqual(self.kvs.get_key(KvsARN=arn, Key="/old")["Value"], "/new.txt")
        self.assertEqual(error_code(self.kvs.get_key, KvsARN=arn, Key="/absent"), "ResourceNotFoundException")
        self.assertEqual(error_code(self.kvs.put_key, KvsARN=arn, Key="big", Value="v" * 1025, IfMatch=put["ETag"]),
                         "ValidationException")
        updated = self.kvs.update_keys(KvsARN=arn, IfMatch=put["ETag"],
                                       Puts=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
        self.assertEqual(updated["ItemCount"], 3)
        keys = [item["Key"] for page in self.kvs.get_paginator("list_keys").paginate(KvsARN=arn, MaxResults=2)
                for item in page["Items"]]
        self.assertEqual(keys, ["/old", "a", "b"])
        deleted = self.kvs.delete_key(KvsARN=arn, Key="a", IfMatch=updated["ETag"])
        self.assertEqual(deleted["ItemCount"], 2)

    def test_a_function_reads_its_store_while_the_edge_serves(self):
        store = self.store("router")
        arn = store["ARN"]
        for key, body in [("new.txt", b"the new page"), ("moved.txt", b"the moved page")]:
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        etag = self.kvs.describe_key_value_store(KvsARN=arn)["ETag"]
        etag = self.kvs.put_key(KvsARN=arn, Key="/old", Value="/new.txt", IfMatch=etag)["ETag"]
        name = "router" + self.run_id
        config = {"Comment": "", "Runtime": "cloudfront-js-2.0",
                  "KeyValueStoreAssociations": {"Quantity": 1, "Items": [{"KeyValueStoreARN": arn}]}}
        created = self.cloudfront.create_function(Name=name, FunctionConfig=config, FunctionCode=ROUTER.encode())
        function_arn = self.cloudfront.publish_function(Name=name, IfMatch=created["ETag"])["FunctionSummary"][
            "FunctionMetadata"]["FunctionARN"]
        distribution = self.cloudfront.create_distribution(DistributionConfig={
            "CallerReference": name, "Comment": "", "Enabled": True,
            "Origins": {"Quantity": 1, "Items": [{"Id": "o", "DomainName": BUCKET + ".s3.amazonaws.com",
                                                  "S3OriginConfig": {"OriginAccessIdentity": ""}}]},
            "DefaultCacheBehavior": {
                "TargetOriginId": "o", "ViewerProtocolPolicy": "allow-all",
                "CachePolicyId": "4135ea2d-6df8-44a3-9df3-4b5a84be39ad",
                "FunctionAssociations": {"Quantity": 1, "Items": [
                    {"FunctionARN": function_arn, "EventType": "viewer-request"}]}},
        })["Distribution"]
        url = "http://" + distribution["DomainName"] + "/old"
        self.assertEqual(fetch(url), (200, "the new page"))
        self.kvs.put_key(KvsARN=arn, Key="/old", Value="/moved.txt", IfMatch=etag)
        deadline = time.time() + 5
        while fetch(url) != (200, "the moved page") and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(fetch(url), (200, "the moved page"))
        current = self.cloudfront.describe_key_value_store(Name=store["Name"])["ETag"]
        self.assertEqual(error_code(self.cloudfront.delete_key_value_store, Name=store["Name"], IfMatch=current),
                         "CannotDeleteEntityWhileInUse")


if __name__ == "__main__":
    unittest.main()
