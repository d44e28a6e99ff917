"""The embedded object store: S3Proxy, a Java S3 API server, with its filesystem backend (see `ObjectStore`).

It runs only when a storage root (TIDEMARK_LAKE_ROOT, TIDEMARK_CHECKPOINT_ROOT, TIDEMARK_COLD_ROOT)
is ``s3a://`` and TIDEMARK_S3_ENDPOINT is unset; with the endpoint set, the store (MinIO, AWS S3) is
external and ``up`` only checks it and creates missing buckets.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tidemark.object_store import ensure_buckets, s3_filesystem
from tidemark.stack.service_base import Service


class ObjectStore(Service):
    """S3Proxy 2.6 from the jars `make setup` fetched (jvm/s3proxy/pom.xml), on 127.0.0.1:TIDEMARK_S3_PORT.

    Files it owns under TIDEMARK_HOME/s3proxy: s3proxy.conf and logback.xml (rewritten on every start),
    data/ (one directory per bucket, one file per object: jclouds' filesystem backend). Authentication
    is AWS signature v2/v4 with the fixed local keys of ObjectStoreSettings.
    """

    name = "objectstore"
    binary_hint = "run `make setup` (it installs Java 17 and Maven, and copies S3Proxy into jvm/lib/s3proxy)"
    start_timeout_s = 60.0  # ~2 s idle; a JVM on a busy 2-core box needs more
    stop_timeout_s = 15.0
    main_class = "org.gaul.s3proxy.Main"

    @property
    def dir(self) -> Path:
        return self.cfg.home / "s3proxy"

    @property
    def conf_file(self) -> Path:
        return self.dir / "s3proxy.conf"

    def signature(self) -> str:
        return f"{self.main_class} --properties {self.conf_file}"

    @property
    def external(self) -> bool:
        return self.cfg.object_store.external

    @property
    def address(self) -> str:
        return self.cfg.object_store.endpoint

    def port(self) -> int:
        return self.cfg.object_store.port

    def ports(self) -> list[tuple[int, str]]:
        return [(self.port(), "TIDEMARK_S3_PORT")]

    def binary(self) -> str | None:
        java = shutil.which("java")
        if not java or not any(Path(self.cfg.object_store.jars_dir).glob("s3proxy-*.jar")):
            return None
        return java

    def argv(self, binary: str) -> list[str]:
        store = self.cfg.object_store
        return [
            binary,
            f"-Xmx{store.heap}",
            "-XX:+UseSerialGC",  # one small server on a shared box: no parallel GC threads
            f"-Dlogback.configurationFile={self.dir / 'logback.xml'}",
            "-cp",
            f"{store.jars_dir}/*",
            self.main_class,
            "--properties",
            str(self.conf_file),
        ]

    def prepare(self) -> None:
        store = self.cfg.object_store
        (self.dir / "data").mkdir(parents=True, exist_ok=True)
        self.conf_file.write_text(
            "\n".join(
                [
                    f"s3proxy.endpoint=http://127.0.0.1:{store.port}",
                    "s3proxy.authorization=aws-v2-or-v4",
                    f"s3proxy.identity={store.access_key}",
                    f"s3proxy.credential={store.secret_key}",
                    # jclouds' blob store on a local directory: a bucket is a directory, an object a file.
                    # Not its successor "filesystem-nio2": that one answers a HEAD of a directory as a
                    # 0-byte object, so S3A takes every directory for a file. This one never lists an
                    # empty directory's marker (S3A sees no empty directories): the checkpoint uses
                    # the FileSystem-based manager, which never asks whether a parent exists.
                    "jclouds.provider=filesystem",
                    f"jclouds.filesystem.basedir={self.dir / 'data'}",
                    "",
                ]
            )
        )
        # S3Proxy ships no logging configuration: logback's default logs every request at DEBUG.
        (self.dir / "logback.xml").write_text(
            '<configuration><appender name="err" class="ch.qos.logback.core.ConsoleAppender">'
            "<encoder><pattern>%d{ISO8601} %-5level %logger{36} %msg%n</pattern></encoder></appender>"
            '<root level="WARN"><appender-ref ref="err"/></root></configuration>\n'
        )

    def healthy(self) -> bool:
        from pyarrow import fs

        try:  # an authenticated request (list the buckets): the keys work, not just the port
            s3_filesystem(self.cfg.object_store).get_file_info(fs.FileSelector("", recursive=False))
            return True
        except OSError:
            return False

    def up(self):
        status = super().up()
        ensure_buckets(self.cfg.object_store)  # the roots' buckets, embedded or external
        return status
