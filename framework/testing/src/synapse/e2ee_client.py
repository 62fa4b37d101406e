#!/usr/bin/env python3
"""A real end-to-end-encrypted Matrix client (matrix-nio with vodozemac) for Switchboard's tests.

    e2ee_client.py dm --homeserver URL --user @alice:hs --password PW --store DIR \
        --peer @bot:hs --send "ping 1" --expect "pong 1" [--room ROOM] [--timeout 60]

Logs in (device `NIOTEST`, keys kept in --store), opens an encrypted direct chat with --peer
(or reuses --room), waits until the peer has joined, sends --send encrypted (sharing the room
key with every device of the members, verified or not), then syncs until a message from the
peer whose decrypted body contains --expect arrives. Prints one JSON line: the room, the
reply, and what arrived that could not be decrypted.
"""
import argparse
import asyncio
import json
import sys
import time

from nio import (AsyncClient, AsyncClientConfig, LoginResponse, MegolmEvent,
                 RoomCreateResponse, RoomMessageText, RoomSendResponse)


async def sync_once(client):
    return await client.sync(timeout=1000, full_state=False)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["dm"])
    parser.add_argument("--homeserver", required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--peer", required=True)
    parser.add_argument("--send", required=True)
    parser.add_argument("--expect", required=True)
    parser.add_argument("--room")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    # Each run starts with a full sync: nio keeps keys in --store but not the rooms, so a run
    # that reuses --room must see the room's state again.
    config = AsyncClientConfig(store_sync_tokens=False, encryption_enabled=True)
    client = AsyncClient(args.homeserver, args.user, device_id="NIOTEST",
                         store_path=args.store, config=config)
    result = {"room_id": None, "reply": None, "undecryptable": [], "error": None}
    try:
        login = await client.login(args.password, device_name="nio test")
        if not isinstance(login, LoginResponse):
            raise RuntimeError(f"login failed: {login}")
        await sync_once(client)
        if client.should_upload_keys:
            await client.keys_upload()
        room_id = args.room
        if room_id is None:
            created = await client.room_create(
                is_direct=True, invite=[args.peer],
                initial_state=[{"type": "m.room.encryption", "state_key": "",
                                "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
            if not isinstance(created, RoomCreateResponse):
                raise RuntimeError(f"room creation failed: {created}")
            room_id = created.room_id
        result["room_id"] = room_id
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline:
            await sync_once(client)
            room = client.rooms.get(room_id)
            if room is not None and args.peer in room.users:
                break
        else:
            raise RuntimeError(f"{args.peer} never joined {room_id}")
        sent = await client.room_send(room_id, "m.room.message",
                                      {"msgtype": "m.text", "body": args.send},
                                      ignore_unverified_devices=True)
        if not isinstance(sent, RoomSendResponse):
            raise RuntimeError(f"sending failed: {sent}")
        result["sent_event_id"] = sent.event_id
        while time.monotonic() < deadline and result["reply"] is None:
            response = await sync_once(client)
            joined = getattr(response, "rooms", None)
            timeline = joined.join.get(room_id).timeline.events if joined and room_id in joined.join else []
            for event in timeline:
                if event.sender != args.peer:
                    continue
                if isinstance(event, RoomMessageText) and args.expect in event.body:
                    result["reply"] = event.body
                    result["reply_was_encrypted"] = bool(getattr(event, "decrypted", False))
                elif isinstance(event, MegolmEvent):
                    result["undecryptable"].append(event.event_id)
        if result["reply"] is None:
            raise RuntimeError(f"no reply containing {args.expect!r} within {args.timeout} s")
    except Exception as error:  # reported as JSON, the test decides
        result["error"] = str(error)
    finally:
        await client.close()
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
