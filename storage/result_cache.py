"""The result cache: a Redis index from content key to the outputs already stored for it, and
the jobs now computing outputs for it (so that identical uploads attach instead of computing).

Per content key ``K`` (the upload's bytes, model and options; never the effect set):

- ``<prefix>:cache:K`` — hash, output name (an effect or ``mask``) → a ``StoredOutput`` as
  JSON (``key``, ``content_type``, ``width``, ``height``, ``bytes``). Entries are only ever added,
  since the objects they name never change. Expires ``ttl`` seconds after its last hit.
- ``<prefix>:inflight:K`` — hash, leader job id → JSON ``{"names": [...], "followers": [...]}``:
  a queued or running job computing ``names`` and the jobs waiting for its outputs.
- ``<prefix>:inflight-index`` — sorted set of ``K/leader`` by claim time, for the sweeper.

Claiming and releasing are Lua scripts, so a job that attaches to a leader can never slip in
after the leader has handed its followers over.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import redis


@dataclass(frozen=True)
class StoredOutput:
    """One output stored under a content-addressed key, as a job lists it.

    ``foreground``: the subject's box in this output's pixels, (left, top, width, height);
    every output of a job has the same one. None in entries cached before it was recorded."""

    key: str
    content_type: str
    width: int
    height: int
    bytes: int
    foreground: tuple[int, int, int, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "key": self.key,
            "content_type": self.content_type,
            "width": self.width,
            "height": self.height,
            "bytes": self.bytes,
        }
        if self.foreground is not None:
            data["foreground"] = list(self.foreground)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StoredOutput:
        box = data.get("foreground")
        return cls(
            data["key"],
            data["content_type"],
            data["width"],
            data["height"],
            data["bytes"],
            None if box is None else (box[0], box[1], box[2], box[3]),
        )


# KEYS: cache hash, in-flight hash, in-flight index. ARGV: job id, index member, now, names...
# Answers {"hit"}, {"follow", leader} or {"lead", missing names as JSON}.
_CLAIM = """
local missing = {}
for i = 4, #ARGV do
  if redis.call('HEXISTS', KEYS[1], ARGV[i]) == 0 then missing[#missing + 1] = ARGV[i] end
end
if #missing == 0 then return {'hit'} end
local leaders = redis.call('HGETALL', KEYS[2])
for i = 1, #leaders, 2 do
  local entry = cjson.decode(leaders[i + 1])
  local planned = {}
  for _, name in ipairs(entry.names) do planned[name] = true end
  local covered = true
  for _, name in ipairs(missing) do
    if not planned[name] then covered = false break end
  end
  if covered then
    table.insert(entry.followers, ARGV[1])
    redis.call('HSET', KEYS[2], leaders[i], cjson.encode(entry))
    return {'follow', leaders[i]}
  end
end
-- Written by hand: cjson would write the empty followers list as {}.
redis.call('HSET', KEYS[2], ARGV[1], '{"names":' .. cjson.encode(missing) .. ',"followers":[]}')
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return {'lead', cjson.encode(missing)}
"""

# KEYS: in-flight hash, in-flight index. ARGV: leader job id, index member.
# Answers the followers as JSON (an empty list when the job led nothing).
_RELEASE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[2])
if not raw then return '[]' end
redis.call('HDEL', KEYS[1], ARGV[1])
local followers = cjson.decode(raw).followers
if #followers == 0 then return '[]' end
return cjson.encode(followers)
"""

# KEYS: in-flight hash. ARGV: leader job id, follower job id. Answers 1 if it was attached.
_DETACH = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local entry = cjson.decode(raw)
local kept = {}
for _, id in ipairs(entry.followers) do
  if id ~= ARGV[2] then kept[#kept + 1] = id end
end
if #kept == #entry.followers then return 0 end
local followers = '[]'
if #kept > 0 then followers = cjson.encode(kept) end
redis.call('HSET', KEYS[1], ARGV[1],
  '{"names":' .. cjson.encode(entry.names) .. ',"followers":' .. followers .. '}')
return 1
"""


def output_names(effects: Iterable[str]) -> list[str]:
    """Every job also gets the mask its effects were cut with."""
    return [*effects, "mask"]


@dataclass(frozen=True)
class Claim:
    outcome: Literal["hit", "follow", "lead"]
    leader: str | None = None  # for "follow": the job whose outputs this one waits for
    missing: tuple[str, ...] = ()  # for "lead": the outputs no one had computed


class ResultCache:
    def __init__(self, client: redis.Redis, prefix: str = "cutout", ttl_seconds: int = 30 * 86400):
        self.redis = client
        self.prefix = prefix
        self.ttl = ttl_seconds
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._detach = client.register_script(_DETACH)

    def _cache(self, content_key: str) -> str:
        return f"{self.prefix}:cache:{content_key}"

    def _inflight(self, content_key: str) -> str:
        return f"{self.prefix}:inflight:{content_key}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:inflight-index"

    def lookup(self, content_key: str, names: Sequence[str]) -> dict[str, StoredOutput]:
        """The cached outputs among ``names`` (all of them on a full hit); a hit keeps the
        entry alive for another ``ttl``."""
        key = self._cache(content_key)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hmget(key, list(names))
            pipe.expire(key, self.ttl)
            found, _ = pipe.execute()
        return {
            name: StoredOutput.from_dict(json.loads(raw))
            for name, raw in zip(names, found, strict=True)
            if raw
        }

    def store(self, content_key: str, outputs: Mapping[str, StoredOutput]) -> None:
        key = self._cache(content_key)
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={name: json.dumps(o.to_dict()) for name, o in outputs.items()})
            pipe.expire(key, self.ttl)
            pipe.execute()

    def claim(self, content_key: str, job_id: str, names: Sequence[str]) -> Claim:
        """Atomically: a hit if every name is cached; else attach ``job_id`` to a job already
        computing every missing name; else make ``job_id`` the leader for the missing names."""
        keys = [self._cache(content_key), self._inflight(content_key), self._index]
        args: list[str | float] = [job_id, f"{content_key}/{job_id}", time.time(), *names]
        answer = [_text(part) for part in self._claim(keys=keys, args=args)]
        if answer[0] == "hit":
            return Claim("hit")
        if answer[0] == "follow":
            return Claim("follow", leader=answer[1])
        return Claim("lead", missing=tuple(json.loads(answer[1])))

    def release(self, content_key: str, leader: str) -> list[str]:
        """End ``leader``'s claim and hand over its followers (each exactly once: a second
        release of the same leader gets none)."""
        keys = [self._inflight(content_key), self._index]
        raw = self._release(keys=keys, args=[leader, f"{content_key}/{leader}"])
        return list(json.loads(_text(raw)))

    def detach(self, content_key: str, leader: str, follower: str) -> bool:
        """Take ``follower`` off ``leader``'s list (it was canceled); False if it was not on
        it (the leader has handed its followers over already)."""
        return bool(self._detach(keys=[self._inflight(content_key)], args=[leader, follower]))

    def claims_older_than(self, seconds: float) -> list[tuple[str, str]]:
        """``(content key, leader job id)`` of claims made more than ``seconds`` ago."""
        members: list[bytes] = self.redis.zrangebyscore(  # type: ignore[assignment]
            self._index, "-inf", time.time() - seconds
        )
        pairs = (_text(m).split("/", 1) for m in members)
        return [(content_key, job_id) for content_key, job_id in pairs]


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
