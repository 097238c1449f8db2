"""A consumer process for tests that kill, stop and restart real consumers.

Run as `python -m pm_tools.testing.worker --stream NAME --consumer NAME …`. Its handler records,
for every delivery, whether the message's idempotency key was new (`SET … NX`), in a Redis list
`<stream>:log` of `consumer message_id new|dup attempt` lines, so a test can check afterwards
that every key was seen as new exactly once, whatever was killed in between.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

import msgspec

from pm_shared import logs
from pm_shared.messages import Message, new_message_id, now
from pm_shared.streams import Consumer, Delivery
from pm_shared.streams.connection import connect
from pm_shared.streams.names import stream_key
from pm_shared.streams.provision import ensure_group


class Probe(Message, frozen=True, kw_only=True, tag="test.probe"):
    """The message tests publish."""

    seq: int


def probe(seq: int, intent_id: str | None = None) -> Probe:
    return Probe(
        intent_id=intent_id or f"intent-{seq}", message_id=new_message_id(), produced_at=now(), seq=seq
    )


_RECORD = """
local outcome = redis.call('SET', KEYS[1], ARGV[1], 'NX') and 'new' or 'dup'
redis.call('RPUSH', KEYS[2], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. outcome .. ' ' .. ARGV[3])
return outcome
"""


def log_key(stream: str) -> str:
    return f"{{{stream}:0}}:log"


def seen_key(stream: str, message_id: str) -> str:
    return f"{{{stream}:0}}:seen:{message_id}"


async def main(args: argparse.Namespace) -> int:
    redis = connect(args.redis_url)
    reader = connect(args.redis_url, blocking_reads=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    async def handle(delivery: Delivery[Probe]) -> None:
        message = delivery.message
        await redis.rpush(
            log_key(args.stream), f"{args.consumer} {message.message_id} start {delivery.attempt}"
        )
        if args.delay_ms:
            await asyncio.sleep(args.delay_ms / 1000)
        if args.fail:
            raise RuntimeError(f"probe {message.seq} refused")
        # The idempotency record and its log line in one step, as a real handler commits its effect
        # and its record in one transaction: a SIGKILL cannot fall between them.
        keys_and_args = (seen_key(args.stream, message.message_id), log_key(args.stream))
        await redis.eval(_RECORD, 2, *keys_and_args, args.consumer, message.message_id, str(delivery.attempt))

    for partition in range(args.partitions):
        await ensure_group(redis, stream_key(args.stream, partition), args.group)
    consumer = Consumer(
        redis=redis,
        reader=reader,
        stream=args.stream,
        group=args.group,
        consumer=args.consumer,
        decoder=msgspec.json.Decoder(Probe),
        handle=handle,
        partitions=args.partitions,
        count=args.count,
        block_ms=args.block_ms,
        concurrency=args.concurrency,
        lease_ms=args.lease_ms,
        retry_delay_ms=args.retry_delay_ms,
        claim_interval_ms=args.claim_interval_ms,
    )
    await redis.rpush(log_key(args.stream), f"{args.consumer} - started 0")
    await consumer.run(stop)
    await redis.rpush(log_key(args.stream), f"{args.consumer} - stopped 0")
    await reader.aclose()
    await redis.aclose()
    return 0


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pm-test-worker")
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", default="workers")
    parser.add_argument("--consumer", required=True)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--block-ms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--delay-ms", type=int, default=0)
    parser.add_argument("--lease-ms", type=int, default=30_000)
    parser.add_argument("--retry-delay-ms", type=int, default=100)
    parser.add_argument("--claim-interval-ms", type=int, default=200)
    parser.add_argument("--fail", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logs.configure("test-worker", "WARNING", "text")
    logging.getLogger("pm_shared.streams").setLevel(logging.INFO)
    sys.exit(asyncio.run(main(parse(sys.argv[1:]))))
