"""The `cloudfront` fixture: `keyfront emulate` on free loopback ports for
the test session, boto3 clients for its CloudFront API and S3, and its edge.

    def test_serves(cloudfront):
        cloudfront.s3.put_object(Bucket=cloudfront.bucket, Key="a.txt", Body=b"a")
        created = cloudfront.cloudfront.create_distribution(DistributionConfig={...})
        urllib.request.urlopen("http://" + created["Distribution"]["DomainName"] + "/a.txt")

The emulator's environment (`AWS_ENDPOINT_URL_CLOUDFRONT`, ...) is in
`cloudfront.env`; `cloudfront.client(name)` makes any other boto3 client.
The wheel registers this plugin with pytest: installing it is enough.
"""

import pytest

from .emulator import start_emulator


@pytest.fixture(scope="session")
def cloudfront():
    """`keyfront emulate` for the test session; stopped at its end."""
    emulator = start_emulator()
    try:
        yield emulator
    finally:
        emulator.stop()
