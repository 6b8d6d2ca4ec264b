"""`keyfront emulate` driven from Python: started on free loopback ports,
its environment read, boto3 clients for its CloudFront API and S3, stopped.
No pytest here: `pytest_plugin` makes a fixture of it.
"""

import os
import queue
import shutil
import signal
import subprocess
import sysconfig
import tempfile
import threading
from dataclasses import dataclass, field

# How long `keyfront emulate` may take to print its environment.
STARTUP_SECONDS = 30


def keyfront_binary():
    """The binary this wheel installed beside the interpreter, else one on PATH."""
    installed = os.path.join(sysconfig.get_path("scripts"), "keyfront")
    if os.access(installed, os.X_OK):
        return installed
    found = shutil.which("keyfront")
    if found is None:
        raise RuntimeError("no keyfront binary: install the keyfront wheel or put keyfront on PATH")
    return found


@dataclass
class Emulator:
    """A running `keyfront emulate`: its environment and boto3 clients."""

    process: subprocess.Popen
    directory: str
    env: dict = field(default_factory=dict)

    @property
    def bucket(self):
        return self.env["KEYFRONT_BUCKET"]

    @property
    def edge(self):
        """The edge's URL; each distribution's DomainName is reachable as is too."""
        return self.env["KEYFRONT_EDGE"]

    def client(self, service):
        """A boto3 client of `service` (cloudfront, s3) signed with the emulator's key."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            endpoint_url=self.env["AWS_ENDPOINT_URL_" + service.upper()],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_REGION"],
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    @property
    def cloudfront(self):
        return self.client("cloudfront")

    @property
    def s3(self):
        return self.client("s3")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_emulator(binary=None):
    """Starts `keyfront emulate` on free loopback ports and waits until it
    prints its environment (it serves from then on)."""
    directory = tempfile.mkdtemp(prefix="keyfront-")
    command = [binary or keyfront_binary(), "emulate", "--dir", directory, "--listen", "127.0.0.1:0",
               "--s3-listen", "127.0.0.1:0", "--control-listen", "127.0.0.1:0"]
    log = open(os.path.join(directory, "emulate.log"), "w")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True)
    log.close()
    emulator = Emulator(process=process, directory=directory)
    lines = queue.Queue()

    def read_lines():
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_lines, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=STARTUP_SECONDS)
        except queue.Empty:
            line = None
        if line is None:
            break
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            emulator.env[name] = value
        elif line.startswith("# keyfront emulate"):
            return emulator
    with open(os.path.join(directory, "emulate.log")) as failure:
        reason = failure.read()
    emulator.stop()
    raise RuntimeError("keyfront emulate did not start within %d s: %s" % (STARTUP_SECONDS, reason))
