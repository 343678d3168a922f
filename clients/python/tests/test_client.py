"""The Python client against a real three-node cluster of `quorate serve` processes.

    PYTHONPATH=clients/python/src python3 -m unittest discover -s clients/python/tests -v

The binaries come from $QUORATE_BIN_DIR, else $CARGO_TARGET_DIR/release, else target/release.
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import grpc

from quorate_client import Client, Lease, QuorateError, admin_pb2, payments_pb2

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def binaries():
    for candidate in (
        os.environ.get("QUORATE_BIN_DIR"),
        os.environ.get("CARGO_TARGET_DIR") and os.path.join(os.environ["CARGO_TARGET_DIR"], "release"),
        os.path.join(REPO, "target", "release"),
    ):
        if candidate and os.path.exists(os.path.join(candidate, "quorate")):
            return candidate
    raise RuntimeError("build the binaries first: cargo build --release --bins")


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class Cluster:
    """Three `quorate serve` processes on loopback, killed at the end."""

    def __init__(self, extra_args=()):
        self.dir = tempfile.mkdtemp(prefix="quorate-py-")
        ports = free_ports(9)
        self.client = [f"127.0.0.1:{ports[i]}" for i in range(3)]
        peer = [f"127.0.0.1:{ports[3 + i]}" for i in range(3)]
        metrics = [f"127.0.0.1:{ports[6 + i]}" for i in range(3)]
        initial = ",".join(f"{i + 1}={peer[i]}" for i in range(3))
        quorate = os.path.join(binaries(), "quorate")
        self.processes = {}
        self.logs = []
        for i in range(3):
            log = open(os.path.join(self.dir, f"node{i + 1}.log"), "w")
            self.logs.append(log)
            self.processes[i + 1] = subprocess.Popen(
                [quorate, "serve", "--id", str(i + 1),
                 "--data-dir", os.path.join(self.dir, f"node{i + 1}"),
                 "--listen-client", self.client[i], "--listen-peer", peer[i],
                 "--listen-metrics", metrics[i], "--initial-cluster", initial, *extra_args],
                stdout=log, stderr=subprocess.STDOUT,
            )

    def leader(self, timeout=20.0, **client_args):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, endpoint in enumerate(self.client):
                if self.processes[i + 1].poll() is not None:
                    continue
                try:
                    with Client([endpoint], deadline=1.0, **client_args) as c:
                        s = c.status()
                    if s.role == admin_pb2.ROLE_LEADER and s.leader_id == s.node_id:
                        return s.node_id
                except grpc.RpcError:
                    pass
            time.sleep(0.1)
        raise AssertionError("no leader within %.0f s" % timeout)

    def kill(self, node):
        self.processes[node].send_signal(signal.SIGKILL)
        self.processes[node].wait()

    def close(self):
        for p in self.processes.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        for log in self.logs:
            log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class ClientTest(unittest.TestCase):
    def setUp(self):
        self.cluster = Cluster()
        self.leader = self.cluster.leader()
        self.follower = next(n for n in (1, 2, 3) if n != self.leader)

    def tearDown(self):
        self.cluster.close()

    def endpoints(self, first):
        """Every endpoint, `first`'s first."""
        ordered = [self.cluster.client[first - 1]]
        return ordered + [e for e in self.cluster.client if e not in ordered]

    def test_a_write_through_a_follower_is_read_back(self):
        with Client(self.endpoints(self.follower)) as client:
            event, replayed = client.authorize("py-1", 1250, "EUR", idempotency_key="py-key-1")
            self.assertFalse(replayed)
            self.assertEqual(event.payment_id, "py-1")
            self.assertGreater(event.index, 0)
            payment = client.get("py-1")
            self.assertEqual(payment.state, payments_pb2.PAYMENT_STATE_AUTHORIZED)
            self.assertEqual(payment.authorized_minor, 1250)

    def test_a_bad_field_is_a_definite_error_with_its_reason(self):
        with Client(self.endpoints(self.leader)) as client:
            with self.assertRaises(QuorateError) as raised:
                client.authorize("py-2", -5, "EUR", idempotency_key="py-key-2")
            self.assertEqual(raised.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertEqual(raised.exception.reason, "INVALID_ARGUMENT")
            self.assertIn("amount_minor", raised.exception.message)

    def test_a_retry_after_the_leader_is_killed_replays_instead_of_writing_twice(self):
        # The write is committed, then the leader dies before the client knows (as if the
        # answer was lost): the client sends it again with the same key, through the leader's
        # endpoint first, which fails, then another node.
        with Client(self.endpoints(self.leader), retry_for=30.0) as client:
            first, replayed = client.authorize("py-3", 700, "EUR", idempotency_key="py-key-3")
            self.assertFalse(replayed)
            self.cluster.kill(self.leader)
            again, replayed = client.authorize("py-3", 700, "EUR", idempotency_key="py-key-3")
            self.assertTrue(replayed, "the retry is answered from the idempotency table")
            self.assertEqual(again.index, first.index)
            payment = client.get("py-3")
            self.assertEqual(len(payment.events), 1, "written once")
            self.assertEqual(payment.authorized_minor, 700)

    def test_a_write_fenced_by_a_lease_taken_over_is_refused_as_stale(self):
        with Client(self.endpoints(self.follower)) as client:
            lease = Lease(client, "py-writer", "worker-a", ttl_ms=1000).acquire()
            client.authorize("py-4", 100, "EUR", idempotency_key="py-key-4", lease=lease)
            # worker-a stops renewing; once the lease expires worker-b takes it over.
            deadline = time.monotonic() + 15
            while True:
                try:
                    Lease(client, "py-writer", "worker-b", ttl_ms=10_000).acquire()
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            with self.assertRaises(QuorateError) as raised:
                client.capture("py-4", 100, "EUR", idempotency_key="py-key-5", lease=lease)
            self.assertEqual(raised.exception.reason, "STALE_TOKEN")


if __name__ == "__main__":
    unittest.main()


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


class Pki:
    """A throwaway CA and certificates, made at test time with the openssl command."""

    def __init__(self, directory):
        self.dir = directory
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=quorate test CA",
                "-days", "2", "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
        self.ca = os.path.join(directory, "ca.pem")

    def issue(self, name, san="IP:127.0.0.1"):
        """(cert, key) paths of a certificate for common name `name`."""
        with open(os.path.join(self.dir, f"{name}.ext"), "w") as ext:
            ext.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth,clientAuth\n")
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                cwd=self.dir)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                "-extfile", f"{name}.ext", cwd=self.dir)
        return os.path.join(self.dir, f"{name}.pem"), os.path.join(self.dir, f"{name}-key.pem")


class TlsClientTest(unittest.TestCase):
    """A cluster with TLS on both ports and a roles file: the client's --cacert/--cert/--key
    and bearer token, as etcdctl names them."""

    TOKEN = "py-oncall-token"

    def setUp(self):
        self.pki_dir = tempfile.mkdtemp(prefix="quorate-py-pki-")
        self.pki = Pki(self.pki_dir)
        node_cert, node_key = self.pki.issue("node")
        self.app = self.pki.issue("py-app", san="DNS:client.invalid")
        token_sha256 = hashlib.sha256(self.TOKEN.encode()).hexdigest()
        roles = os.path.join(self.pki_dir, "roles.toml")
        with open(roles, "w") as f:
            f.write('[[identity]]\nname = "py-app"\nroles = ["writer", "reader"]\n\n'
                    '[[identity]]\nname = "oncall"\nroles = ["admin"]\n'
                    f'token_sha256 = "{token_sha256}"\n')
        self.cluster = Cluster(extra_args=[
            "--cert-file", node_cert, "--key-file", node_key, "--trusted-ca-file", self.pki.ca,
            "--peer-cert-file", node_cert, "--peer-key-file", node_key,
            "--peer-trusted-ca-file", self.pki.ca, "--auth-file", roles,
        ])
        self.cluster.leader(cacert=self.pki.ca, token=self.TOKEN)

    def tearDown(self):
        self.cluster.close()
        shutil.rmtree(self.pki_dir, ignore_errors=True)

    def test_a_client_certificate_writes_and_a_token_administers(self):
        cert, key = self.app
        with Client(self.cluster.client, cacert=self.pki.ca, cert=cert, key=key) as client:
            event, replayed = client.authorize("py-tls-1", 300, "EUR", idempotency_key="py-tls-k1")
            self.assertFalse(replayed)
            self.assertEqual(client.get("py-tls-1").authorized_minor, 300)
            with self.assertRaises(grpc.RpcError) as raised:
                client.status()
            self.assertEqual(raised.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        with Client(self.cluster.client, cacert=self.pki.ca, token=self.TOKEN) as oncall:
            self.assertGreater(oncall.status().term, 0)
        with Client(self.cluster.client, cacert=self.pki.ca, retry_for=1.0) as anonymous:
            with self.assertRaises(QuorateError) as raised:
                anonymous.authorize("py-tls-2", 300, "EUR", idempotency_key="py-tls-k2")
            self.assertEqual(raised.exception.reason, "UNAUTHENTICATED")
        with Client(self.cluster.client, retry_for=1.0, deadline=2.0) as plain:
            with self.assertRaises(QuorateError):
                plain.get("py-tls-1")
