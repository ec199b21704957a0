"""The read and the mapping of a sharded users sync (`shards: N`): `N/source_users` and `N/mapped_attributes`
become graphs of N shard ops, each reading (or mapping) only the rows of its shard's users, and a summary op
that is the asset's output, metadata and checks. What a shard reads: engine/source/shards.py; the pushes that
follow: syncs/shards.py. No `from __future__ import annotations`: Dagster reads the ops' hints.
"""

import time
from dataclasses import dataclass, field

import dagster as dg
import pandas as pd

from contentstack_assets.engine.digests import DIGEST_UNCHANGED, SOURCE_ROWS, digests_apply, read_changed
from contentstack_assets.engine.frames import ChunkWriter, Frame, ShardedFrame, collect
from contentstack_assets.engine.mapping import (
    REJECTION,
    map_frame,
    source_columns,
    stamp_read_time,
    uid_hashes_of,
)
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.io_manager import FRAME_TYPE, FRAMES_IO_MANAGER_KEY
from contentstack_assets.resources import PersonalizeResource, SyncStateResource
from contentstack_assets.spec import UsersSync
from contentstack_assets.syncs.mapped import MappedTally, attribute_check, mapped_metadata, rows_valid_check
from contentstack_assets.syncs.partitions import scope_of, window_of
from contentstack_assets.syncs.project_keys import create_missing_attributes, is_dry_run
from contentstack_assets.syncs.report import (
    PEAK,
    peaks_by_shard,
    process_peak_memory,
    source_metadata,
    user_errors,
)
from contentstack_assets.syncs.runs import SYNC_TAG
from contentstack_assets.syncs.shards import SHARD_IO_MANAGER_KEY, check_outputs

SHARD_TAG = "contentstack/shard"
SAMPLE_ROWS = 20  # a shard's first rejected rows, for the summary's samples (shard 0 records them all)


# -- what a shard's op hands to the summary ------------------------------------------------------------
@dataclass
class ReadPart:
    index: int
    frame: Frame  # the rows of this shard's users (their chunk files in the staging place)
    started_at: float
    read_s: float
    column_types: dict[str, str]
    peak_rss_mib: float | None = None  # its step's process (`process_peak_memory`)


@dataclass
class MappedPart:
    index: int
    frame: Frame
    rejected_rows: Frame  # its rejected rows as mapped (chunk files), which shard 0's push records
    attrs: dict  # the whole read's (its read time)
    valid: int
    map_s: float
    rejected: int = 0
    rejected_head: pd.DataFrame = field(default_factory=pd.DataFrame)  # the first, for the samples
    schema_failures: object = None  # the first schema failure of the valid rows (`MappedTally`)
    peak_rss_mib: float | None = None


# -- N/source_users ------------------------------------------------------------------------------------
def sharded_source_asset(sync: UsersSync, *, source_key: dg.AssetKey, **labels) -> dg.AssetsDefinition:
    """`N/source_users` as N shard reads and a summary: the same key, metadata keys and stored frame kind."""
    shards = sync.shards
    deps = {
        f"after_{index}": dg.AssetIn(key=dg.AssetKey.from_user_string(dep), dagster_type=dg.Nothing)
        for index, dep in enumerate(sync.source.deps)
    }
    read_ops = [_read_op(sync, index) for index in range(shards)]
    summary_op = _read_summary_op(sync)

    def source_users(**after):
        return summary_op([read_op(after=list(after.values())) for read_op in read_ops])

    return dg.graph_asset(
        source_users,
        key=source_key,
        ins=deps,
        kinds={"sqlalchemy"},
        metadata={"source": sync.source.display_url, "relation": sync.source.relation},
        description=(
            f"Rows of {sync.source.relation} at {sync.source.display_url} for the {sync.name} sync, read in "
            f"{shards} shards by user uid"
        ),
        **labels,
    )


def _read_op(sync: UsersSync, index: int) -> dg.OpDefinition:
    shards = sync.shards
    label = f"shard {index + 1} of {shards}"

    @dg.op(
        name=f"{sync.name}__read_shard_{index}",
        description=f"Read the {sync.name} rows of the users of {label}",
        ins={"after": dg.In(dg.Nothing)},
        out=dg.Out(io_manager_key=SHARD_IO_MANAGER_KEY),
        tags={SYNC_TAG: sync.name, SHARD_TAG: f"{index + 1}/{shards}"},
    )
    def read_shard(context: dg.OpExecutionContext, sync_state: SyncStateResource) -> ReadPart:
        reader = SourceReader(sync.source, source_columns(sync))
        started, started_at = time.perf_counter(), time.time()
        progress = lambda rows: context.log.info(f"{sync.name}: {label}: {rows} rows read")  # noqa: E731
        window = window_of(context)
        with user_errors():
            # only its path goes to storage: chunk files, even for one chunk
            if window is None and digests_apply(sync):
                # change detection in the database, over this shard's slice (engine/digests.py)
                frame = read_changed(
                    sync,
                    sync_state.store(),
                    on_progress=progress,
                    log=context.log.info,
                    reader=reader,
                    shard=(index, shards),
                    on_disk=True,
                )
            else:
                chunks = reader.read_chunks(window, on_progress=progress, shard=(index, shards))
                frame = collect(chunks, uid_hashes_of(sync), on_disk=True)
        read_s = time.perf_counter() - started
        peak = process_peak_memory().get(PEAK)
        return ReadPart(index, frame, started_at, read_s, dict(reader.column_types), peak)

    return read_shard.alias(f"read_{index}")


def _read_summary_op(sync: UsersSync) -> dg.OpDefinition:
    @dg.op(
        name=f"{sync.name}__read_summary",
        description=f"The {sync.name} rows every shard read: the asset's output and metadata",
        ins={"parts": dg.In(list)},
        out=dg.Out(FRAME_TYPE, io_manager_key=FRAMES_IO_MANAGER_KEY),
        tags={SYNC_TAG: sync.name},
    )
    def read_summary(context: dg.OpExecutionContext, parts: list) -> ShardedFrame:
        parts = sorted(parts, key=lambda part: part.index)
        frame = stamp_read_time(
            ShardedFrame([part.frame for part in parts], _digested(parts)), min(p.started_at for p in parts)
        )
        context.add_output_metadata(
            {
                "rows_read": len(frame),
                **{key: frame.attrs[key] for key in (SOURCE_ROWS, DIGEST_UNCHANGED) if key in frame.attrs},
                "read_s": round(max(part.read_s for part in parts), 3),  # the shards read side by side
                "scope": scope_of(context),
                "shards": len(parts),
                "rows_by_shard": [len(part.frame) for part in parts],
                **peaks_by_shard(parts),
                **source_metadata(parts[0].column_types, frame),
            }
        )
        return frame

    return read_summary.alias("read_summary")


def _digested(parts: list[ReadPart]) -> dict[str, int]:
    """What the shards' reads by digests tell of the whole source: its rows and those left unread (each
    part's own are in its frame's attrs, for its push)."""
    if not all(SOURCE_ROWS in part.frame.attrs for part in parts):
        return {}
    return {
        SOURCE_ROWS: sum(int(part.frame.attrs[SOURCE_ROWS]) for part in parts),
        DIGEST_UNCHANGED: sum(int(part.frame.attrs.get(DIGEST_UNCHANGED, 0)) for part in parts),
    }


# -- N/mapped_attributes -------------------------------------------------------------------------------
def sharded_mapped_asset(
    sync: UsersSync,
    *,
    source_key: dg.AssetKey,
    mapped_key: dg.AssetKey,
    push_key: dg.AssetKey,
    check_specs: list[dg.AssetCheckSpec],
    **labels,
) -> dg.AssetsDefinition:
    """`N/mapped_attributes` as N shard mappings and a summary that holds the asset's output and checks."""
    map_ops = [_map_op(sync, index) for index in range(sync.shards)]
    summary_op = _map_summary_op(sync, push_key, check_specs)

    def mapped_attributes(source_users):
        return summary_op([map_op(source_users) for map_op in map_ops])

    return dg.graph_asset(
        mapped_attributes,
        key=mapped_key,
        ins={"source_users": dg.AssetIn(key=source_key)},
        kinds={"pandas"},
        check_specs=check_specs,
        description=(
            f"Attributes of the {sync.name} sync, converted to their wire types; bad rows set aside with "
            f"reasons (mapped in {sync.shards} shards)"
        ),
        **labels,
    )


def _map_op(sync: UsersSync, index: int) -> dg.OpDefinition:
    shards = sync.shards
    label = f"shard {index + 1} of {shards}"

    @dg.op(
        name=f"{sync.name}__map_shard_{index}",
        description=f"Convert the {sync.name} rows of {label} to their wire types; set bad rows aside",
        ins={"source_users": dg.In(FRAME_TYPE)},
        out=dg.Out(io_manager_key=SHARD_IO_MANAGER_KEY),
        tags={SYNC_TAG: sync.name, SHARD_TAG: f"{index + 1}/{shards}"},
    )
    def map_shard(context: dg.OpExecutionContext, source_users) -> MappedPart:
        if not isinstance(source_users, ShardedFrame) or len(source_users.parts) != shards:
            raise dg.Failure(
                description=f"sync {sync.name!r}: the stored source_users was read with another number of "
                f"shards than the spec's `shards: {shards}`: materialize source_users again",
                allow_retries=False,
            )
        started = time.perf_counter()
        tally = MappedTally(sync, read_rows=len(source_users))
        first_row = 1 + sum(len(part) for part in source_users.parts[:index])  # rows numbered shard by shard
        set_aside = ChunkWriter()  # its rejected rows as mapped, in files of their own, for shard 0's push

        def on_chunk(chunk: pd.DataFrame) -> None:
            tally.add(chunk)
            rejected = chunk.loc[chunk[REJECTION].notna()]
            if len(rejected):
                set_aside.write(rejected)

        frame = map_frame(
            source_users.parts[index],
            sync,
            on_chunk=on_chunk,
            first_row=first_row,
            shard=(index, shards),
            on_disk=True,
        )
        context.log.info(f"{sync.name}: {label}: {tally.valid} valid rows, {len(tally.rejected)} rejected")
        return MappedPart(
            index,
            frame,
            set_aside.finish(on_disk=True),
            dict(source_users.attrs),
            tally.valid,
            time.perf_counter() - started,
            len(tally.rejected),
            tally.rejected.head(SAMPLE_ROWS),
            tally.schema_failures,
            process_peak_memory().get(PEAK),
        )

    return map_shard.alias(f"map_{index}")


def _map_summary_op(
    sync: UsersSync, push_key: dg.AssetKey, check_specs: list[dg.AssetCheckSpec]
) -> dg.OpDefinition:

    @dg.op(
        name=f"{sync.name}__map_summary",
        description=f"The {sync.name} rows every shard mapped: the asset's output, metadata and checks",
        ins={"parts": dg.In(list)},
        out={
            "result": dg.Out(FRAME_TYPE, io_manager_key=FRAMES_IO_MANAGER_KEY),
            **check_outputs(check_specs),
        },
        tags={SYNC_TAG: sync.name},
    )
    def map_summary(context: dg.OpExecutionContext, parts: list, personalize: PersonalizeResource):
        parts = sorted(parts, key=lambda part: part.index)
        with user_errors():
            listed = personalize.list_attributes(sync.destination)
            # destination.create_missing: the missing keys are created here, before any user is sent
            creation = create_missing_attributes(
                sync, personalize, listed, dry_run=is_dry_run(context, push_key), log=context.log.info
            )
        frame = ShardedFrame([part.frame for part in parts], parts[0].attrs, [p.rejected_rows for p in parts])
        tally = MappedTally(sync, read_rows=len(frame))
        for part in parts:
            tally.add_part(part.valid, part.rejected, part.rejected_head, part.schema_failures)
        context.log.info(f"{sync.name}: {tally.valid} valid rows, {tally.rejected_total} rejected")
        metadata = {
            **mapped_metadata(frame, tally, max(part.map_s for part in parts)),
            **peaks_by_shard(parts),
        }
        yield dg.Output(frame, "result", metadata=metadata)
        yield rows_valid_check(sync, frame, tally)
        yield attribute_check(sync, listed, creation)

    return map_summary.alias("map_summary")
