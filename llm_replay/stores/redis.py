"""One Redis shared by many machines (CI fleets, teams): the same store as the SQLite file, over the network.

Keys, all under the URL's ``?prefix=`` (default ``llm_replay``) so projects can share a server::

    {prefix}:meta                   hash  schema_version
    {prefix}:keys                   set   "fingerprint:occurrence" of every recording
    {prefix}:rec:{fp}:{occ}         hash  request, status, reason, headers, body, recorded_at, latency_ms
    {prefix}:owners:{fp}:{occ}      set   the test ids that own the recording
    {prefix}:owned:{test id}        set   "fingerprint:occurrence" of every recording the test owns
    {prefix}:instants, :clock_reads hash  test id -> frozen instant, whether the recording read the clock

Every write is atomic, one Lua script (a recording: its fields and owners together, both ways) or one
MULTI/EXEC transaction, so many writers on many machines never lose or half-write a recording. Every Redis
failure is a CassetteError naming the URL without its password.

A lookup is a round trip to another process, most of a replayed call's cost, so the plugin asks the store
to ``warm`` the next tests (engine/read_ahead.py): one script returns each one's stored instant and every
recording it owns, and their calls are answered from memory. ``owned`` is only that read-ahead: a recording it
misses is looked up as before, one it names that is gone is skipped. The scripts name keys they build from
the prefix, which a single server (or Sentinel) allows and Redis Cluster does not.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence, Union
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from ..errors import CassetteError
from ..model.credentials import URL_PASSWORD_OPTIONS, without_password
from ..model.interaction import Interaction, Key, OwnerChange, RecordedResponse
from ..model.scrub import Scrubber
from . import recent

if TYPE_CHECKING:
    import redis

# What one key holds, as stored: a string's bytes, a hash's fields, a set's members (sorted).
RawValue = Union[bytes, dict[bytes, bytes], list[bytes]]
# The type of each kind of key llm_replay writes (the name's part after the prefix, up to its next colon).
_LAYOUT = {"meta": b"hash", "keys": b"set", "rec": b"hash", "owners": b"set", "owned": b"set", "instants": b"hash", "clock_reads": b"hash"}

SCHEMA_VERSION = 1
DEFAULT_PREFIX = "llm_replay"
_PREFIX_SHAPE = re.compile(r"[A-Za-z0-9_.-]+")
_BATCH = 500  # keys per pipeline round trip when reading the whole store
# A lookup is one round trip with one reply: the recording and its owners (what replay waits on per call).
_GET = "return {redis.call('HGETALL', KEYS[1]), redis.call('SMEMBERS', KEYS[2])}"
# Every script below starts with these: owned(test) names a test's set of owned recordings, and disown()
# forgets every owner of a recording, both ways. ARGV[1] is always the prefix.
_OWNED = """
local prefix = ARGV[1]
local function owned(test) return prefix .. ':owned:' .. test end
local function disown(member)
    local owners = prefix .. ':owners:' .. member
    for _, test in ipairs(redis.call('SMEMBERS', owners)) do redis.call('SREM', owned(test), member) end
    redis.call('DEL', owners)
end
"""
# A recording replaces whatever answer was under its key, atomically (a script runs whole), and adds its owning tests
# to those it had: two machines that both missed and recorded the same request both own it (the later answer stays),
# or one's later partial prune would free what the other still asks. Owners leave only through change_owners.
# ARGV: prefix, "fp:occ", how many field/value pairs, the pairs, then the owning test ids.
_PUT = _OWNED + """
local member, fields = ARGV[2], tonumber(ARGV[3])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], unpack(ARGV, 4, 3 + 2 * fields))
for i = 4 + 2 * fields, #ARGV do
    redis.call('SADD', KEYS[2], ARGV[i])
    redis.call('SADD', owned(ARGV[i]), member)
end
redis.call('SADD', KEYS[3], member)
"""
# ARGV: prefix, then a JSON list of each recording's ["fp:occ", added, removed] owners; absent recordings are skipped.
_CHANGE_OWNERS = _OWNED + """
for _, change in ipairs(cjson.decode(ARGV[2])) do
    local member = change[1]
    if redis.call('EXISTS', prefix .. ':rec:' .. member) == 1 then
        for _, test in ipairs(change[2]) do
            redis.call('SADD', prefix .. ':owners:' .. member, test)
            redis.call('SADD', owned(test), member)
        end
        for _, test in ipairs(change[3]) do
            redis.call('SREM', prefix .. ':owners:' .. member, test)
            redis.call('SREM', owned(test), member)
        end
    end
end
"""
# ARGV: prefix, then each "fp:occ" to delete with the recorded_at it must still have ('' for any); how many there were.
# A recording written again since it was chosen (another machine's refresh) has another recorded_at and stays.
_DELETE = _OWNED + """
local removed = 0
for i = 2, #ARGV, 2 do
    local member, stamp = ARGV[i], ARGV[i + 1]
    if stamp == '' or redis.call('HGET', prefix .. ':rec:' .. member, 'recorded_at') == stamp then
        disown(member)
        removed = removed + redis.call('DEL', prefix .. ':rec:' .. member)
        redis.call('SREM', prefix .. ':keys', member)
    end
end
return removed
"""
# What the next tests will ask, in one round trip: for each test its instant, clock flag and how many recordings
# follow, then "fp:occ", fields and owners of each it owns (once, for the first test that owns it), within a byte
# budget and without an answer over the per-answer limit (those are looked up when asked, and not kept).
# ARGV: prefix, budget, limit, then the test ids.
_WARM = _OWNED + """
local budget, limit, seen, found = tonumber(ARGV[2]), tonumber(ARGV[3]), {}, {}
local instants = redis.call('HMGET', prefix .. ':instants', unpack(ARGV, 4))
local reads = redis.call('HMGET', prefix .. ':clock_reads', unpack(ARGV, 4))
for t = 4, #ARGV do
    local test = ARGV[t]
    found[#found + 1] = instants[t - 3]
    found[#found + 1] = reads[t - 3]
    local count = #found + 1
    found[count] = 0
    for _, member in ipairs(redis.call('SMEMBERS', owned(test))) do
        local record = prefix .. ':rec:' .. member
        local size = redis.call('HSTRLEN', record, 'body') + redis.call('HSTRLEN', record, 'request')
        if not seen[member] and size > 0 and size <= limit and size <= budget then
            seen[member], budget, found[count] = true, budget - size, found[count] + 1
            found[#found + 1] = member
            found[#found + 1] = redis.call('HGETALL', record)
            found[#found + 1] = redis.call('SMEMBERS', prefix .. ':owners:' .. member)
        end
    end
end
return found
"""
# A clock flag is kept only for a test with a stored instant: the check and the write must not interleave.
_PUT_CLOCK_READ = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then redis.call('HSET', KEYS[2], ARGV[1], ARGV[2]) end
"""


class DamagedValue(CassetteError):
    """A key under the prefix that llm_replay cannot read (a value it never writes, a key of another type): an error
    naming the key and what to do; the key is left as it is."""


class _Unreadable(ValueError):
    """What is wrong with one value, before the store adds which key and cassette it is."""


class RedisCache:
    """Recordings in one Redis database under a key prefix; many processes and machines read and write at once.

    ``url`` is ``redis://[[user]:password@]host[:port][/db][?prefix=name&…]`` (``rediss://`` for TLS); other
    query options go to redis-py (``socket_timeout=…``). Opened read-only it never writes.
    """

    path = None

    def __init__(self, url: str, readonly: bool = False, scrubber: Scrubber | None = None) -> None:
        self.readonly = readonly
        self.scrubber = scrubber or Scrubber()
        self.url = without_password(url)
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        # Every spelling a password may take in what redis-py says back: as typed, and as it sent it (decoded).
        typed = [parts.password or "", *(query.get(option, "") for option in URL_PASSWORD_OPTIONS)]
        self._passwords = sorted({spelling for password in typed if password for spelling in (password, unquote(password))}, key=len, reverse=True)
        self.prefix = query.pop("prefix", DEFAULT_PREFIX)
        if not _PREFIX_SHAPE.fullmatch(self.prefix):
            raise CassetteError(f"cassette {self.url}: prefix {self.prefix!r} may hold only letters, digits and _ . -; pick another ?prefix=")
        self.hosts = (parts.hostname,) if parts.hostname else ()
        self._hits = recent.RecentRecordings()
        # What ``warm`` read for the tests running next: their recordings, and test id -> (instant, clock flag).
        self._ahead: dict[Key, Interaction] = {}
        self._ahead_clocks: dict[str, tuple[datetime | None, bool | None]] = {}
        _redis_py(self.url)  # installed, or a clear error
        with self._talking():
            try:
                self._client = _client(urlunsplit(parts._replace(query=urlencode(query))))
            except (ValueError, TypeError) as error:
                raise CassetteError(self._clean(f"cassette {self.url} is not a usable Redis URL ({error}); the form is redis://host:6379/0?prefix=myapp")) from None
            self._get = self._client.register_script(_GET)
            self._put = self._client.register_script(_PUT)
            self._put_clock_read = self._client.register_script(_PUT_CLOCK_READ)
            self._change_owners = self._client.register_script(_CHANGE_OWNERS)
            self._delete = self._client.register_script(_DELETE)
            self._warm = self._client.register_script(_WARM)
            self._check_schema()

    def describe(self) -> str:
        """How the cassette is named in messages: the URL without its password."""
        return self.url

    def _key(self, *parts: object) -> str:
        return ":".join((self.prefix, *map(str, parts)))

    def _check_schema(self) -> None:
        stored, owned_sets = self._client.hmget(self._key("meta"), "schema_version", "owned_sets")
        with self._reading(self._key("meta"), f"set it to the version that wrote the rest (this llm_replay writes {SCHEMA_VERSION}: redis-cli HSET {self._key('meta')} schema_version {SCHEMA_VERSION})"):
            version = None if stored is None else _field({b"schema_version": stored}, b"schema_version", int, "not a number")
        if version is not None and version > SCHEMA_VERSION:
            raise CassetteError(
                f"cassette {self.url} was written by a newer llm_replay (schema {version}, this one reads up to "
                f"{SCHEMA_VERSION}); upgrade llm_replay: update its checkout and pip install -e it again"
            )
        if self.readonly:
            return
        if stored is None:
            self._client.hsetnx(self._key("meta"), "schema_version", SCHEMA_VERSION)
        if owned_sets is None:
            self._index_owners()

    def _index_owners(self) -> None:
        """A store written before the per-test owned sets gets them once, from each recording's owners (the first
        writing open does it; until then its tests are looked up call by call, as before)."""
        members = self._members()
        for start in range(0, len(members), _BATCH):
            chunk = members[start : start + _BATCH]
            pipe = self._client.pipeline(transaction=False)
            for (fingerprint, occurrence), (owners,) in self._batched(chunk, "smembers owners"):
                for test_id in owners:
                    pipe.sadd(self._key("owned", test_id.decode()), f"{fingerprint}:{occurrence}")
            pipe.execute()
        self._client.hset(self._key("meta"), "owned_sets", 1)

    @contextmanager
    def _talking(self) -> Iterator[None]:
        """Turns every redis-py failure into a CassetteError that names the URL (never the password)."""
        import redis

        try:
            yield
        except redis.exceptions.AuthenticationError as error:
            raise CassetteError(self._clean(f"Redis at {self.url} refused the credentials ({error}); check the user and password in the URL")) from None
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
            raise CassetteError(self._clean(
                f"cannot reach the Redis cassette {self.url} ({error}); start the server or fix the URL "
                "(--llm-cassette, ini llm_cassette, --cassette)"
            )) from None
        except redis.exceptions.ResponseError as error:
            if "WRONGTYPE" in str(error):
                raise self._misplaced(redis.exceptions.RedisError) from None
            raise CassetteError(self._clean(f"the Redis cassette {self.url} failed: {error}{_REMEDIES.get(str(error), '')}")) from None
        except redis.exceptions.RedisError as error:
            raise CassetteError(self._clean(f"the Redis cassette {self.url} failed: {error}")) from None

    def _misplaced(self, failure: type[Exception]) -> CassetteError:
        """The error for a WRONGTYPE reply, which does not say which key: the first key under the prefix that is not of
        the type llm_replay keeps there."""
        try:
            found = self._wrong_type()
        except failure:  # the server went away meanwhile
            found = None
        if found is None:
            return DamagedValue(f"the Redis cassette {self.url} holds a key of a type llm_replay does not write there; list them: redis-cli --scan --pattern '{self.prefix}:*'")
        name, kind, expected = found
        return DamagedValue(self._clean(
            f"cassette {self.url}: key {name} is a {kind}, where llm_replay keeps a {expected}; another program wrote it under this prefix: "
            "rename or remove it (redis-cli RENAME/DEL), or give the cassette a ?prefix= of its own (llm_replay changed nothing)"
        ))

    def _wrong_type(self) -> tuple[str, str, str] | None:
        for name in self._client.scan_iter(match=f"{self.prefix}:*", count=1000):
            shown = name.decode(errors="replace")
            expected, kind = _LAYOUT.get(shown.split(":")[1]), self._client.type(name)
            if expected is not None and kind != expected:
                return shown, kind.decode(), expected.decode()
        return None

    @contextmanager
    def _reading(self, name: str, fix: str, what: str = "cannot be read") -> Iterator[None]:
        """Turns a value llm_replay cannot read into a DamagedValue naming its key, what is wrong and ``fix``."""
        try:
            yield
        except _Unreadable as error:
            raise self._damaged(name, fix, error, what) from None

    def _damaged(self, name: str, fix: str, error: _Unreadable, what: str = "cannot be read") -> DamagedValue:
        return DamagedValue(self._clean(f"cassette {self.url}: key {name} {what} ({error}); {fix} (llm_replay changed nothing)"))

    def _recording(self, key: Key, fields: Mapping[bytes, bytes], owners: Iterable[bytes]) -> Interaction:
        """The interaction stored under ``key``, or a DamagedValue saying which field is wrong and how to replace it."""
        try:  # not the _reading block: every replay reads a recording, and its message is built only when it is needed
            return _from_fields(key, fields, owners)
        except _Unreadable as error:
            fingerprint, occurrence = key
            fix = f"re-record it (pytest --llm-mode=refresh, the test that asks it) or delete it (llm-replay rm {fingerprint[:12]} --cassette '{self.url}')"
            raise self._damaged(self._key("rec", fingerprint, occurrence), fix, error, "is not a recording llm_replay can read") from None

    def _clean(self, message: str) -> str:
        for password in self._passwords:
            message = message.replace(password, "***")
        return message

    def _writable(self) -> None:
        if self.readonly:
            raise CassetteError(f"cassette {self.url} is open read-only (replay mode); record with --llm-mode=record")

    # -- recordings --------------------------------------------------------------------------

    def get(self, fingerprint: str, occurrence: int = 0) -> Interaction | None:
        """The interaction recorded under this key, if any."""
        key = (fingerprint, occurrence)
        hit = self._ahead.get(key) or self._hits.get(key)
        if hit is not None:
            return hit
        with self._talking():
            flat, owners = self._get(keys=[self._key("rec", fingerprint, occurrence), self._key("owners", fingerprint, occurrence)])
        if not flat:
            return None
        interaction = self._recording(key, _pairs(flat), owners)
        self._hits.put(interaction)
        return interaction

    def get_many(self, keys: Iterable[Key]) -> Iterator[Interaction]:
        """The interactions under these keys (those there are), many to a round trip."""
        return iter([self._recording(key, fields, owners) for key, (fields, owners) in self._batched(list(keys), "hgetall rec", "smembers owners") if fields])

    def warm(self, test_ids: Sequence[str]) -> None:
        """Read ahead, in one round trip, what these tests will ask: each one's stored instant and the recordings
        it owns (what was read ahead before is let go)."""
        test_ids = self.scrubber.test_ids(test_ids)
        if not test_ids:
            self._ahead, self._ahead_clocks = {}, {}
            return
        self._ahead, self._ahead_clocks = {}, {}
        try:
            with self._talking():
                found = self._warm(args=[self.prefix, recent.HIT_CACHE_BYTES, recent.HIT_CACHE_ITEM_BYTES, *test_ids])
        except DamagedValue:
            return  # a key of the wrong type: each test meets it, named, when it asks (and only that test)
        ahead, clocks, at = {}, {}, 0
        for test_id in test_ids:
            instant, read, count = found[at : at + 3]
            with suppress(_Unreadable):  # an unreadable value is left for the lookup that names it
                clocks[test_id] = _clock(instant, read, test_id)
            at += 3
            for member, flat, owners in zip(*[iter(found[at : at + 3 * count])] * 3):
                with suppress(_Unreadable):
                    key = _key_of(member)
                    ahead[key] = _from_fields(key, _pairs(flat), owners)
            at += 3 * count
        self._ahead, self._ahead_clocks = ahead, clocks

    def put(self, interaction: Interaction) -> None:
        """Store or overwrite an interaction, scrubbed of credentials, atomically: readers see all of it or none. Its
        tests are added to the owners the key had (another machine's write may have landed since this one missed)."""
        self._writable()
        interaction = self.scrubber.interaction(interaction)
        fingerprint, occurrence = interaction.key
        record, owners = self._key("rec", fingerprint, occurrence), self._key("owners", fingerprint, occurrence)
        response = interaction.response
        fields = {
            "request": interaction.request_json,
            "status": response.status,
            "reason": response.reason,
            "headers": json.dumps(response.headers, sort_keys=True),
            "body": response.body,
            "recorded_at": interaction.recorded_at,
        }
        if interaction.latency_ms is not None:
            fields["latency_ms"] = repr(interaction.latency_ms)
        pairs = [item for name_value in fields.items() for item in name_value]
        with self._talking():
            self._put(keys=[record, owners, self._key("keys")], args=[self.prefix, f"{fingerprint}:{occurrence}", len(fields), *pairs, *interaction.tests])
        self._forget([interaction.key])
        self._hits.put(interaction)

    def change_owners(self, changes: Mapping[Key, OwnerChange]) -> None:
        """Add and remove owning tests, all in one script (absent keys are ignored)."""
        if not changes:
            return
        self._writable()
        scrubbed = [
            [f"{fingerprint}:{occurrence}", list(map(self.scrubber.test_id, change.added)), list(map(self.scrubber.test_id, change.removed))]
            for (fingerprint, occurrence), change in changes.items()
        ]
        with self._talking():
            self._change_owners(args=[self.prefix, json.dumps(scrubbed)])
        self._forget(changes)

    def delete(self, keys: Iterable[Key], recorded_at: Mapping[Key, str] | None = None) -> int:
        """Remove these recordings and their owners, in one script; how many there were. ``recorded_at``: only those
        still stamped so (one written again since it was chosen stays). Redis frees what they held at once (what the
        server's own RDB/AOF files keep is the server's to rewrite)."""
        keys = list(keys)
        if not keys:
            return 0
        self._writable()
        stamps = recorded_at or {}
        with self._talking():
            removed = self._delete(args=[self.prefix, *(part for key in keys for part in (f"{key[0]}:{key[1]}", stamps.get(key, "")))])
        self._forget(keys)
        return removed

    def _forget(self, keys: Iterable[Key]) -> None:
        """Drop what memory holds of these recordings (changed or gone)."""
        for key in keys:
            self._hits.pop(key)
            self._ahead.pop(key, None)

    def _members(self) -> list[Key]:
        with self._talking():
            members = self._client.smembers(self._key("keys"))
        keys = []
        for member in members:
            with self._reading(self._key("keys"), f"remove it: redis-cli SREM {self._key('keys')} {member.decode(errors='replace')!r}"):
                keys.append(_key_of(member))
        return sorted(keys)

    def _batched(self, keys: list[Key], *commands: str, tolerant: bool = False) -> Iterator[tuple[Key, list[Any]]]:
        """(key, [reply of each command]) for every key, ``_BATCH`` keys per round trip. A command reads
        ``"METHOD KIND [FIELD …]"`` and runs on the key's ``PREFIX:KIND:FP:OCC`` (``"hmget rec request recorded_at"``).
        ``tolerant``: a command that fails (a key of another type) gives its error as its reply instead of raising."""
        for start in range(0, len(keys), _BATCH):
            chunk = keys[start : start + _BATCH]
            with self._talking():
                pipe = self._client.pipeline(transaction=False)
                for fingerprint, occurrence in chunk:
                    for command in commands:
                        name, kind, *fields = command.split()
                        getattr(pipe, name)(self._key(kind, fingerprint, occurrence), *fields)
                replies = pipe.execute(raise_on_error=not tolerant)
            width = len(commands)
            for index, key in enumerate(chunk):
                yield key, replies[index * width : (index + 1) * width]

    def interactions(self) -> Iterator[Interaction]:
        """Every interaction, ordered by fingerprint and occurrence."""
        found = [self._recording(key, fields, owners) for key, (fields, owners) in self._batched(self._members(), "hgetall rec", "smembers owners") if fields]
        return iter(found)

    def requests(self) -> Iterator[tuple[str, int, str]]:
        """(fingerprint, occurrence, canonical request JSON) of every interaction, oldest recording first; no bodies."""
        rows = [
            (recorded_at.decode(), key, request.decode())
            for key, ((request, recorded_at),) in self._batched(self._members(), "hmget rec request recorded_at")
            if request is not None
        ]
        return iter([(fingerprint, occurrence, request) for _, (fingerprint, occurrence), request in sorted(rows)])

    def index(self, owned: bool = False, unreadable: dict[Key, str] | None = None) -> list[tuple[Key, tuple[str, ...], str]]:
        """Every key with the tests that own it and when it was recorded (for pruning), without loading the bodies;
        ``owned``: only those some test owns. A recording whose keys another program overwrote (its owners no set of
        test ids) fails the read, or, given ``unreadable``, is left out and noted there with how to remove the bad key."""
        found = []
        for key, (owners, recorded_at) in self._batched(self._members(), "smembers owners", "hget rec recorded_at", tolerant=unreadable is not None):
            if recorded_at is None or not (owners or not owned):  # None: deleted since the keys were listed
                continue
            try:
                found.append(self._index_row(key, owners, recorded_at))
            except ValueError as error:
                if unreadable is None:
                    raise
                unreadable[key] = str(error)
        return found

    def _index_row(self, key: Key, owners: Any, recorded_at: Any) -> tuple[Key, tuple[str, ...], str]:
        """One recording's index row; a ValueError names a key llm_replay cannot read and the command that removes it."""
        for kind, reply in (("owners", owners), ("rec", recorded_at)):
            if isinstance(reply, Exception):
                name = self._key(kind, *key)
                raise ValueError(f"{name} holds what llm_replay does not keep there: {reply}; remove it first: redis-cli DEL {name}")
        return key, _tests(owners), recorded_at.decode()

    def __len__(self) -> int:
        with self._talking():
            return self._client.scard(self._key("keys"))

    # -- each test's frozen instant ----------------------------------------------------------

    def stored_clock(self, test_id: str) -> tuple[datetime | None, bool | None]:
        """The instant a test recorded at, and whether its recording read the clock (None: unknown)."""
        test_id = self.scrubber.test_id(test_id)
        ahead = self._ahead_clocks.get(test_id)
        if ahead is not None:
            return ahead
        with self._talking():
            pipe = self._client.pipeline(transaction=False)
            pipe.hget(self._key("instants"), test_id)
            pipe.hget(self._key("clock_reads"), test_id)
            stored = pipe.execute()
        with self._reading(self._key("instants"), self._instant_fix(test_id)):
            return _clock(*stored, test_id)

    def _instant_fix(self, test_id: str) -> str:
        return f"re-record the test (pytest --llm-mode=refresh) or remove the field: redis-cli HDEL {self._key('instants')} {test_id!r}"

    def instants(self) -> list[tuple[str, datetime, bool | None]]:
        """Every test's stored instant and clock flag (for copies and merges)."""
        with self._talking():
            pipe = self._client.pipeline(transaction=False)
            pipe.hgetall(self._key("instants"))
            pipe.hgetall(self._key("clock_reads"))
            instants, reads = pipe.execute()
        found = []
        for test_id, instant in instants.items():
            with self._reading(self._key("instants"), self._instant_fix(test_id.decode())):
                found.append((test_id.decode(), *_clock(instant, reads.get(test_id), test_id.decode())))
        return sorted(found)

    def put_instant(self, test_id: str, instant: datetime) -> None:
        """Remember the instant a test recorded at; whether it reads the clock is unknown until it ends."""
        self._writable()
        with self._talking():
            test_id = self.scrubber.test_id(test_id)
            pipe = self._client.pipeline(transaction=True)
            pipe.hset(self._key("instants"), test_id, instant.isoformat())
            pipe.hdel(self._key("clock_reads"), test_id)
            pipe.execute()
        self._ahead_clocks.pop(test_id, None)

    def put_clock_read(self, test_id: str, read: bool) -> None:
        """Remember whether a test that recorded read the clock (a test with no stored instant is left alone)."""
        self._writable()
        with self._talking():
            test_id = self.scrubber.test_id(test_id)
            self._put_clock_read(keys=[self._key("instants"), self._key("clock_reads")], args=[test_id, int(read)])
        self._ahead_clocks.pop(test_id, None)

    # -- every byte under the prefix (llm-replay audit and scrub) ------------------------------

    def raw(self) -> Iterator[tuple[bytes, RawValue]]:
        """Every key under the prefix with what it holds, byte for byte, whatever wrote it: what an audit reads."""
        with self._talking():
            names = sorted(self._client.scan_iter(match=f"{self.prefix}:*", count=1000))
        for start in range(0, len(names), _BATCH):
            chunk = names[start : start + _BATCH]
            with self._talking():
                pipe = self._client.pipeline(transaction=False)
                for name in chunk:
                    pipe.type(name)
                kinds = pipe.execute()
                for name, kind in zip(chunk, kinds):
                    _read_raw(pipe, name, kind, self.url)
                values = pipe.execute()
            found = ((name, _raw_value(kind, value)) for name, kind, value in zip(chunk, kinds, values))
            yield from ((name, value) for name, value in found if value is not None)

    def rewrite(self, transform: Callable[[bytes], bytes]) -> int:
        """Pass every key name, field name, member and value under the prefix through ``transform``, each key that
        changes rewritten in one transaction (retried if a writer touched it meanwhile); how many pieces changed."""
        self._writable()
        import redis

        changed = 0
        for name, value in self.raw():
            if not _pieces_changed(name, value, transform):
                continue
            with self._talking(), self._client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(name)
                        kind = pipe.type(name)
                        current = _raw_value(kind, _read_raw(pipe, name, kind, self.url))
                        count = _pieces_changed(name, current, transform) if current is not None else 0
                        pipe.multi()
                        if count:
                            pipe.delete(name)
                            _WRITERS[kind](pipe, transform(name), _transformed(current, transform))
                        pipe.execute()
                        changed += count
                        break
                    except redis.exceptions.WatchError:
                        continue
        self._hits.clear()
        self._ahead, self._ahead_clocks = {}, {}
        return changed

    def close(self) -> None:
        """Release the connections; the recordings stay on the server."""
        self._client.close()


def _redis_py(shown: str) -> Any:
    try:
        import redis
    except ImportError as error:
        raise CassetteError(f"cassette {shown} needs redis-py ({error}); install it with: pip install 'redis[hiredis]' (in llm_replay's checkout: pip install -e '.[redis]')") from None
    return redis


def _client(url: str) -> "redis.Redis":
    """A client that connects now (so an unreachable server fails at the start, not at the first lookup)."""
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    # Timeouts the URL's own query may override. One quick retry covers a connection the server closed
    # while idle; a server that is gone fails at once. One connection held (behind redis-py's lock) saves
    # a lookup the pool's checkout, a third of its cost; pipelines (writes) take their own from the pool.
    return redis.Redis.from_url(
        url, socket_connect_timeout=5, socket_timeout=30, retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 1), single_connection_client=True
    )


def _key_of(member: bytes) -> Key:
    fingerprint, _, occurrence = member.decode(errors="replace").rpartition(":")
    if not fingerprint or not occurrence.isdigit():
        raise _Unreadable(f"a member is {member.decode(errors='replace')!r}, not fingerprint:occurrence")
    return fingerprint, int(occurrence)


def _pairs(flat: Sequence[bytes]) -> dict[bytes, bytes]:
    """A hash as HGETALL returns it from a script: field, value, field, value, …"""
    return dict(zip(flat[::2], flat[1::2]))


def _clock(instant: bytes | None, read: bytes | None, test_id: str) -> tuple[datetime | None, bool | None]:
    if instant is None:
        return None, None
    try:
        stored = datetime.fromisoformat(instant.decode())
    except ValueError:
        raise _Unreadable(f"the instant of {test_id!r} is {instant[:60].decode(errors='replace')!r}, not an ISO date and time") from None
    return stored, None if read is None else read == b"1"


def _tests(owners: Iterable[bytes]) -> tuple[str, ...]:
    return tuple(sorted(owner.decode() for owner in owners))


def _from_fields(key: Key, fields: Mapping[bytes, bytes], owners: Iterable[bytes]) -> Interaction:
    """The interaction a recording's hash holds; _Unreadable names the first field that is missing or wrong."""
    latency = fields.get(b"latency_ms")
    return Interaction(
        fingerprint=key[0],
        occurrence=key[1],
        request_json=_field(fields, b"request", bytes.decode, "not UTF-8 text"),  # parsed when asked for (not on a replay's path)
        response=RecordedResponse(
            status=_field(fields, b"status", int, "not a number"),
            reason=_field(fields, b"reason", bytes.decode, "not UTF-8 text"),
            headers=_field(fields, b"headers", _json_headers, "not JSON"),
            body=bytes(_field(fields, b"body", bytes, "")),
        ),
        recorded_at=_field(fields, b"recorded_at", bytes.decode, "not UTF-8 text"),
        latency_ms=None if latency is None else _field(fields, b"latency_ms", float, "not a number"),
        tests=_tests(owners),
    )


def _field(fields: Mapping[bytes, bytes], name: bytes, parse: Callable[[bytes], Any], wrong: str) -> Any:
    """One stored field, parsed; _Unreadable says which field and what is wrong with it."""
    if name not in fields:
        raise _Unreadable(f"field {name.decode()} is missing")
    try:
        return parse(fields[name])
    except (ValueError, TypeError) as error:
        shown = fields[name][:60].decode(errors="replace")
        raise _Unreadable(f"field {name.decode()} is {wrong}: {shown!r}, {error}") from None


def _json_headers(value: bytes) -> dict[str, list[str]]:
    headers = json.loads(value)
    if not isinstance(headers, dict):
        raise ValueError("not an object of header names")
    return headers


# How each type of key is read whole: llm_replay writes strings, hashes and sets; another program under the prefix may
# have left the others, which an audit must read too.
_READERS: dict[bytes, Callable[[Any, bytes], Any]] = {
    b"string": lambda client, name: client.get(name),
    b"hash": lambda client, name: client.hgetall(name),
    b"set": lambda client, name: client.smembers(name),
    b"list": lambda client, name: client.lrange(name, 0, -1),
    b"zset": lambda client, name: client.zrange(name, 0, -1, withscores=True),
    b"stream": lambda client, name: client.xrange(name),
}
# A reply's end that says what to do about it.
_REMEDIES = {"DB index is out of range": "; the server has fewer databases (16 unless configured): name another in the URL's path (redis://host:6379/0)"}


def _read_raw(client: Any, name: bytes, kind: bytes, url: str) -> Any:
    """Ask ``client`` (a pipeline queues it; a watching pipeline answers at once) for what ``name`` holds."""
    if kind == b"none":  # deleted since it was listed: 0, which keeps a pipeline's replies in step
        return client.exists(name)
    if kind not in _READERS:
        raise DamagedValue(
            f"cassette {url}: key {name.decode(errors='replace')} is a {kind.decode()}, which llm_replay cannot read; "
            "another program uses this prefix: give the cassette a ?prefix= of its own"
        )
    return _READERS[kind](client, name)


def _raw_value(kind: bytes, value: Any) -> RawValue | None:
    """A reply as the audit reads it: a set's members sorted, a list's in order; a sorted set as a hash of member ->
    score and a stream as a hash of "entry-id field" -> value, so every piece is a name or a value."""
    if kind == b"none":  # a key deleted since it was listed
        return None
    if kind == b"set":
        return sorted(value)
    if kind == b"zset":
        return {member: repr(score).encode() for member, score in value}
    if kind == b"stream":
        return {entry + b" " + field: data for entry, fields in value for field, data in fields.items()}
    return value


def _transformed(value: RawValue, transform: Callable[[bytes], bytes]) -> RawValue:
    if isinstance(value, dict):
        return {transform(field): transform(data) for field, data in value.items()}
    if isinstance(value, list):
        return [transform(member) for member in value]
    return transform(value)


def _pieces_changed(name: bytes, value: RawValue, transform: Callable[[bytes], bytes]) -> int:
    """How many of a key's pieces (its name, field names, values, members) ``transform`` changes."""
    if isinstance(value, dict):
        pieces = [name, *value, *value.values()]
    elif isinstance(value, list):
        pieces = [name, *value]
    else:
        pieces = [name, value]
    return sum(transform(piece) != piece for piece in pieces)


def _write_stream(pipe: Any, name: bytes, value: RawValue) -> None:
    entries: dict[bytes, dict[bytes, bytes]] = {}
    for entry_field, data in value.items():  # type: ignore[union-attr]
        entry, _, field = entry_field.partition(b" ")
        entries.setdefault(entry, {})[field] = data
    for entry, fields in entries.items():
        pipe.xadd(name, fields, id=entry)


# How each type of key is written back from what ``_raw_value`` made of it (into a key deleted first).
_WRITERS: dict[bytes, Callable[[Any, bytes, Any], None]] = {
    b"string": lambda pipe, name, value: pipe.set(name, value),
    b"hash": lambda pipe, name, value: pipe.hset(name, mapping=value),
    b"set": lambda pipe, name, value: pipe.sadd(name, *value),
    b"list": lambda pipe, name, value: pipe.rpush(name, *value),
    b"zset": lambda pipe, name, value: pipe.zadd(name, {member: float(score) for member, score in value.items()}),
    b"stream": _write_stream,
}
