"""`minio server` and the three `mc` commands docker/compose.yaml uses, on moto's S3 server.

minio server DIR [--console-address :PORT]   serve S3 on 127.0.0.1:$S3_PORT (default 9000)
mc ready local                                exit 0 once that server answers
mc alias set NAME URL KEY SECRET              remember an endpoint (in ~/.mc-standin.json)
mc mb --ignore-existing NAME/BUCKET           create a bucket there
"""
import json
import os
import sys
import urllib.request
from pathlib import Path

ALIASES = Path.home() / ".mc-standin.json"
PORT = int(os.environ.get("S3_PORT", "9000"))


def minio(args):
    from moto.server import main as moto_main

    moto_main(["-H", "0.0.0.0", "-p", str(PORT)])


def mc(args):
    if args[:2] == ["ready", "local"]:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/", timeout=3)
        except OSError:
            sys.exit(1)
        return
    if args[:2] == ["alias", "set"]:
        name, url, key, secret = args[2:6]
        aliases = json.loads(ALIASES.read_text()) if ALIASES.exists() else {}
        aliases[name] = {"url": url, "key": key, "secret": secret}
        ALIASES.write_text(json.dumps(aliases))
        return
    if args[0] == "mb":
        import boto3

        target = [a for a in args[1:] if not a.startswith("--")][0]
        name, bucket = target.split("/", 1)
        alias = json.loads(ALIASES.read_text())[name]
        s3 = boto3.client("s3", endpoint_url=alias["url"], aws_access_key_id=alias["key"],
                          aws_secret_access_key=alias["secret"], region_name="us-east-1")
        try:
            s3.create_bucket(Bucket=bucket)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            if "--ignore-existing" not in args:
                raise
        print(f"Bucket created successfully `{target}`.")
        return
    sys.exit(f"mc stand-in: unsupported command {args}")


if __name__ == "__main__":
    {"minio": minio, "mc": mc}[sys.argv[1]](sys.argv[2:])
