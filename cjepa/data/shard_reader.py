"""Reading shards: streamed from wherever they live, through webdataset's tar reader, or by random access.

Streaming (training, pretraining, evaluation passes): :func:`read_shard` opens a shard by its location and
yields its samples in tar order.

* a local path: the file;
* ``http://`` / ``https://``: read with the standard library (:func:`open_http`), not with webdataset's
  default opener, which runs the ``curl`` program: a fresh machine or a slim container image often has no
  ``curl``, while Python's own HTTP client is always there. A connection cut mid-shard is reopened where it broke
  (a ``Range`` request), so a transient network failure loses no samples; a body that stays shorter than its
  Content-Length is an error, noticed even where the cut falls between two tar members;
* anything else webdataset's ``gopen`` opens, above all ``pipe:CMD`` (CMD's standard output, e.g.
  ``pipe:aws s3 cp s3://bucket/train-000000.tar -``), and its ``gs:``, ``ais:``, ``hf:`` schemes.

Members come from webdataset's tar iterator (:func:`webdataset.tariterators.tar_file_iterator`) and are grouped
into samples by key (member name up to the first dot; consecutive members with one key are one sample), as
webdataset groups them. :func:`resampled_shards` draws shards with replacement through webdataset's
:class:`~webdataset.shardlists.ResampledShards`, seeded so that a draw depends on (seed, pass, worker) only.

Random access (extraction, encoder training; local shards only): :func:`video_entries` lists every sample's
byte ranges from the shard indexes and :func:`read_entry` reads one sample by them.
"""

from __future__ import annotations

import http.client
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

from webdataset.gopen import gopen
from webdataset.shardlists import ResampledShards
from webdataset.tariterators import tar_file_iterator

from cjepa.data.samples import BadSample
from cjepa.data.shards import ShardError, ShardInfo, SplitInfo, read_index

HTTP_TIMEOUT_S = 60.0  # per socket operation: a stalled server fails the shard instead of hanging a worker
# Opening a URL: connection failures and 5xx answers are retried, with 0.5 s, 1 s between tries; a body cut
# mid-way is reopened where it broke as often (HTTP_ATTEMPTS - 1 reconnections).
HTTP_ATTEMPTS = 3
# What a broken shard raises while it is read: tar damage, I/O, a failing pipe: command, a cut HTTP body.
READ_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, http.client.HTTPException)

Report = Callable[..., None]  # report(shard, key, reason, detail, count)


# --------------------------------------------------------------------------------------------- opening


class _HttpBody:
    """A response body that picks up where it was cut, and raises when it cannot.

    A connection that ends before the body's Content-Length (or breaks, or stalls past the timeout) is reopened
    from the first byte not yet read, up to ``attempts - 1`` times: with a ``Range`` request where the server
    honours it (206), else by reading the whole body again and skipping what was read. The reopened body must
    have the first response's length (an object replaced in the meantime is an error, not a splice). A body
    still short after that raises, so a connection cut mid-shard is noticed even where it falls between two tar
    members."""

    def __init__(self, response, url: str, *, timeout: float, attempts: int):
        self.response, self.url, self.timeout, self.attempts = response, url, timeout, attempts
        length = response.headers.get("Content-Length")
        self.total = int(length) if length is not None else None
        self.offset = 0  # bytes delivered to the reader
        self.reopened = 0

    @property
    def left(self) -> Optional[int]:
        return None if self.total is None else self.total - self.offset

    def read(self, n: int = -1) -> bytes:
        while True:
            try:
                data = self.response.read(n) if n is not None and n >= 0 else self.response.read()
            except (http.client.HTTPException, OSError) as err:
                if self.total is None:
                    raise
                self._reopen(f"connection broke after {self.offset} of {self.total} bytes ({err})")
                continue
            self.offset += len(data)
            if data or n == 0 or not self.left:
                return data
            self._reopen(f"connection ended {self.left} bytes before the end of the body")

    def _reopen(self, why: str) -> None:
        if self.reopened + 1 >= self.attempts:
            raise OSError(f"{self.url}: {why}; gave up after {self.reopened} reconnection(s)")
        self.reopened += 1
        time.sleep(0.5 * 2 ** (self.reopened - 1))
        self.response.close()
        request = urllib.request.Request(self.url, headers={"Range": f"bytes={self.offset}-"})
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except (urllib.error.URLError, http.client.HTTPException, OSError):
            self.response = _EmptyBody()  # the next read reopens again, or gives up
            return
        if response.status == 206:
            total = response.headers.get("Content-Range", "").rpartition("/")[2]
            start = response.headers.get("Content-Range", "").partition(" ")[2].partition("-")[0]
            if start != str(self.offset) or total != str(self.total):
                raise OSError(f"{self.url}: the server resumed with {response.headers.get('Content-Range')!r}, "
                              f"not bytes {self.offset}-{self.total - 1}/{self.total}")
        else:  # the server ignores Range: the whole body again, its first offset bytes skipped
            length = response.headers.get("Content-Length")
            if length is not None and int(length) != self.total:
                raise OSError(f"{self.url}: the body changed length on reconnection ({self.total} -> {length} bytes)")
            skip = self.offset
            while skip:
                chunk = response.read(min(skip, 1 << 20))
                if not chunk:
                    break
                skip -= len(chunk)
            if skip:
                response.close()
                self.response = _EmptyBody()
                return
        self.response = response

    def close(self) -> None:
        self.response.close()


class _EmptyBody:
    """Stands in for a response that could not be reopened: reads nothing, so the next read tries again."""

    def read(self, n: int = -1) -> bytes:
        return b""

    def close(self) -> None:
        pass


def open_http(url: str, *, timeout: float = HTTP_TIMEOUT_S, attempts: int = HTTP_ATTEMPTS) -> _HttpBody:
    """A readable body of an http(s) URL; an HTTP error answer (e.g. 404) raises at once, unreachable servers and
    5xx answers after ``attempts`` tries; a body cut mid-way is reopened where it broke (see :class:`_HttpBody`)."""
    for attempt in range(attempts):
        try:
            return _HttpBody(urllib.request.urlopen(url, timeout=timeout), url, timeout=timeout, attempts=attempts)
        except urllib.error.HTTPError as err:
            if err.code < 500 or attempt + 1 == attempts:
                raise OSError(f"{url}: HTTP {err.code} {err.reason}") from err
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            if attempt + 1 == attempts:
                raise OSError(f"{url}: {getattr(err, 'reason', err)}") from err
        time.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


def open_shard(shard: ShardInfo):
    """A readable binary stream of the shard's bytes, wherever it lives."""
    if shard.path is not None:
        return open(shard.path, "rb")
    if shard.url.partition(":")[0].lower() in ("http", "https"):
        return open_http(shard.url)
    return gopen(shard.url, "rb")


def _close(stream) -> None:
    """Close a shard stream; a pipe: command that fails only at exit has already delivered (or broken) the data."""
    try:
        stream.close()
    except OSError:
        pass


# --------------------------------------------------------------------------------------------- streaming


def sample_key(name: str) -> tuple[str, str]:
    """(key, extension) of a tar member name: the file name up to its first dot, and the rest."""
    key, _, ext = name.rsplit("/", 1)[-1].partition(".")
    return key, ext.lower()


def read_shard(shard: ShardInfo, report: Report, *, keep: Optional[Callable[[int], bool]] = None) -> Iterator[dict]:
    """Samples of one shard in tar order (``{"__key__", "__url__", ext: bytes}``); ``keep(i)`` selects by position.

    A shard that cannot be opened, or breaks mid-way (truncated, corrupt, a failing pipe, a cut connection), ends
    there: the samples completed before the damage are kept, what could not be read is counted through
    ``report(shard, key, reason, detail, count)`` with the key at which reading failed (``unreadable_shard`` when
    nothing could be read, else ``truncated_shard``).
    """
    member: dict[str, Optional[str]] = {"name": None}
    n = 0
    current: Optional[dict] = None

    def note(name: str) -> bool:  # webdataset's member filter: runs before a member's data is read
        member["name"] = name
        return True

    def emit() -> bool:
        nonlocal n
        i, n = n, n + 1
        return keep is None or keep(i)

    stream = None
    try:
        stream = open_shard(shard)
        for m in tar_file_iterator(stream, select_files=note):
            key, ext = sample_key(m["fname"])
            if current is not None and key != current["__key__"]:
                if emit():
                    yield current
                current = None
            if current is None:
                current = {"__key__": key, "__url__": shard.name}
            current[ext] = m["data"]
    except READ_ERRORS as err:
        name = member["name"]
        bad_key = sample_key(name)[0] if name else (current or {}).get("__key__", "?")
        if current is not None and current["__key__"] != bad_key and emit():
            yield current  # complete: the damage starts with the next sample
        lost = max(1, shard.num_samples - n) if shard.num_samples is not None else 1
        if name is None:
            report(shard.name, bad_key, "unreadable_shard", f"shard unreadable ({err}); {lost} sample(s) lost", lost)
        else:
            report(shard.name, bad_key, "truncated_shard", f"tar unreadable at {name} ({err}); {lost} sample(s) lost",
                   lost)
        return
    finally:
        if stream is not None:
            _close(stream)
    if current is not None and emit():
        yield current
    if shard.num_samples is not None and n < shard.num_samples:  # the tar ended cleanly but early (cut at a header)
        report(shard.name, current["__key__"] if current else "?", "truncated_shard",
               f"shard ends after {n} of {shard.num_samples} samples", shard.num_samples - n)


def resampled_shards(shards: list[ShardInfo], count: int, *, seed: int) -> list[ShardInfo]:
    """``count`` shards drawn with replacement (webdataset's ResampledShards), a function of ``seed`` alone."""
    by_name = {s.name: s for s in shards}
    draw = ResampledShards([s.name for s in shards], nshards=count, seed=seed, worker_seed=lambda: 0,
                           deterministic=True)
    return [by_name[d["url"]] for d in draw]


def count_samples(shard: ShardInfo) -> Optional[int]:
    """Samples in a shard: from the manifest, the index, or a scan of a local tar; None for a remote shard."""
    if shard.num_samples is not None:
        return shard.num_samples
    if shard.index_path is not None:
        return len(read_index(shard.index_path))
    if shard.path is None:
        return None
    return sum(1 for _ in read_shard(shard, lambda *a: None))


# --------------------------------------------------------------------------------------------- random access


@dataclass
class Entry:
    """One sample of a local shard with the byte range of each component."""

    key: str
    shard: ShardInfo
    components: dict[str, tuple[int, int]]


def read_entry(e: Entry) -> dict:
    """The raw components of one sample, read by byte range: ``{"__key__", "__url__", ext: bytes}``."""
    raw = {"__key__": e.key, "__url__": e.shard.name}
    with open(e.shard.path, "rb") as fh:
        for ext, (off, size) in e.components.items():
            fh.seek(off)
            data = fh.read(size)
            if len(data) != size:
                raise BadSample("truncated_shard", f"{e.key}.{ext} ends past the end of the shard")
            raw[ext] = data
    return raw


def video_entries(split: SplitInfo, report: Report) -> list[Entry]:
    """Every sample of a local split with its byte ranges, from the shard indexes (or a scan where one is missing),
    in sorted key order."""
    split.require_local("random access to samples (extraction, encoder training, DALI)")
    entries: list[Entry] = []
    for shard in split.shards:
        if shard.index_path is not None:
            samples = read_index(shard.index_path)
        else:
            samples = [{"key": key, "components": comps} for key, comps in scan_offsets(shard, report)]
        entries += [Entry(s["key"], shard, s["components"]) for s in samples]
    keys = [e.key for e in entries]
    if len(set(keys)) != len(keys):
        dup = sorted(k for k, c in Counter(keys).items() if c > 1)[:5]
        raise ShardError(f"split {split.name!r}: duplicate keys across shards, e.g. {dup}")
    return sorted(entries, key=lambda e: e.key)


def scan_offsets(shard: ShardInfo, report: Report) -> list[tuple[str, dict[str, Any]]]:
    """(key, {ext: (data offset, size)}) of a local tar without an index; stops, and reports, at damage."""
    out: list[tuple[str, dict]] = []
    try:
        with tarfile.open(shard.path, "r:") as tf:
            for m in tf:
                if not m.isreg():
                    continue
                key, ext = sample_key(m.name)
                if not out or out[-1][0] != key:
                    out.append((key, {}))
                out[-1][1][ext] = (m.offset_data, m.size)
    except (tarfile.TarError, OSError, EOFError) as err:
        report(shard.name, out[-1][0] if out else "?", "truncated_shard", f"tar unreadable ({err})", 1)
    return out
