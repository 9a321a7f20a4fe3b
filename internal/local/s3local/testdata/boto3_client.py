"""Exercises s3local with boto3 (run by clients_test.go). Prints one JSON object of results."""
import hashlib
import io
import json
import sys

import boto3
import botocore
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

endpoint, ak, sk = sys.argv[1:4]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk,
    region_name="us-east-1",
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
)
out = {}
s3.create_bucket(Bucket="boto")
s3.put_object(Bucket="boto", Key="incoming/plate 1/X_blue.png", Body=b"blue", ContentType="image/png",
              Metadata={"stain": "dapi"})
h = s3.head_object(Bucket="boto", Key="incoming/plate 1/X_blue.png")
out["head"] = [h["ContentLength"], h["ContentType"], h["Metadata"].get("stain")]
big = bytes(range(256)) * (20 * 4096)  # 20 MiB
s3.upload_fileobj(io.BytesIO(big), "boto", "big/obj+1.bin",
                  Config=TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20))
got = s3.get_object(Bucket="boto", Key="big/obj+1.bin")
body = got["Body"].read()
out["big"] = [len(body), hashlib.md5(body).hexdigest() == hashlib.md5(big).hexdigest(), got["ETag"]]
r = s3.get_object(Bucket="boto", Key="big/obj+1.bin", Range="bytes=256-511")
out["range"] = r["Body"].read() == bytes(range(256))
keys, prefixes = [], []
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="boto", Delimiter="/", PaginationConfig={"PageSize": 1}):
    keys += [o["Key"] for o in page.get("Contents", [])]
    prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
out["list_delim"] = [keys, prefixes]
allkeys = []
for page in s3.get_paginator("list_objects").paginate(Bucket="boto", PaginationConfig={"PageSize": 1}):
    allkeys += [o["Key"] for o in page.get("Contents", [])]
out["list_v1"] = allkeys
s3.copy_object(Bucket="boto", Key="copy of blue.png", CopySource={"Bucket": "boto", "Key": "incoming/plate 1/X_blue.png"})
out["copy"] = s3.get_object(Bucket="boto", Key="copy of blue.png")["Body"].read().decode()
try:
    s3.get_object(Bucket="boto", Key="missing")
    out["missing"] = "no error"
except botocore.exceptions.ClientError as e:
    out["missing"] = e.response["Error"]["Code"]
url = s3.generate_presigned_url("get_object", Params={"Bucket": "boto", "Key": "incoming/plate 1/X_blue.png"}, ExpiresIn=60)
out["presigned"] = url
v4 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"))
out["presigned_v4"] = v4.generate_presigned_url("get_object", Params={"Bucket": "boto", "Key": "incoming/plate 1/X_blue.png"}, ExpiresIn=60)
d = s3.delete_objects(Bucket="boto", Delete={"Objects": [{"Key": "copy of blue.png"}, {"Key": "big/obj+1.bin"}]})
out["deleted"] = sorted(x["Key"] for x in d.get("Deleted", []))
bad = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ak, aws_secret_access_key=sk + "x",
                   region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
try:
    bad.list_buckets()
    out["badsig"] = "no error"
except botocore.exceptions.ClientError as e:
    out["badsig"] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
print(json.dumps(out))
