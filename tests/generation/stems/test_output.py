"""Writing results through a sink: the CLI's folder and the service's blob store give the
same records and the same manifest, differing only in where the files are."""

import dataclasses
import json

import pytest

from generation.adapters.storage import BlobSink
from generation.errors import BlobNotFoundError
from generation.request import parse_request
from generation.stems.grid import plan_grid
from generation.stems.output import LocalFolder, finish_set, write_stem
from generation.stems.record import StemRecord
from generation.stems.render import render_stems

# Where a file went, and what depends on the wall clock.
LOCATION = {"file", "blob_url"}
CLOCK = {"created_at", "timings"}


def request():
    return parse_request(
        {
            "generation_request_id": "same-request",
            "target_stems": ["bass", "drums"],
            "seed": 5,
            "parameters": {"duration_seconds": 2, "target_bpm": 120, "bars": 1},
        }
    )


def test_local_folder_writes_atomically_and_reads_back(tmp_path):
    sink = LocalFolder(tmp_path / "out")
    assert sink.write("a.wav", b"abc", "audio/wav") == ("a.wav", None)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.wav"]  # no .partial left
    assert sink.read("a.wav") == b"abc"
    with pytest.raises(BlobNotFoundError):
        sink.read("missing.wav")


def test_a_record_round_trips_and_the_callback_carries_its_subset():
    record = StemRecord(
        stem="bass",
        prompt="p",
        seed=1,
        model_id="m",
        format="wav",
        sample_rate=32000,
        samples=10,
        duration_seconds=0.0003,
        generation_seconds=1.0,
        warnings=("w",),
    ).placed("generations/r/bass.wav", "http://b/bass.wav")
    assert StemRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    assert set(record.for_callback()) == set(StemRecord.CALLBACK_FIELDS)
    assert record.for_callback()["blob_url"] == "http://b/bass.wav"
    guided = dataclasses.replace(record, melody_source="chords", in_key=0.93)
    assert StemRecord.from_dict(guided.to_dict()) == guided
    assert guided.for_callback()["melody_source"] == "chords"
    assert guided.for_callback()["in_key"] == 0.93
    assert (
        guided.to_dict()["melody_conditioned"]
        is guided.for_callback()["melody_conditioned"]
        is True
    )


def test_a_record_from_before_melody_source_reads_as_following_the_upload():
    earlier = {"stem": "bass", "prompt": "p", "seed": 1, "model_id": "m", "format": "wav"}
    earlier |= {"sample_rate": 32000, "samples": 10, "duration_seconds": 0.0003}
    earlier |= {"generation_seconds": 1.0, "warnings": []}
    assert StemRecord.from_dict({**earlier, "melody_conditioned": True}).melody_source == "upload"
    assert StemRecord.from_dict({**earlier, "melody_conditioned": False}).melody_source is None
    assert StemRecord.from_dict(earlier).in_key is None  # not checked then
    # A record from a newer worker (mid-deploy) with a field this one does not know.
    newer = StemRecord.from_dict({**earlier, "in_key": 0.91, "in_tune": 0.9})
    assert (newer.stem, newer.in_key) == ("bass", 0.91) and "in_tune" not in newer.to_dict()


def test_cli_and_service_write_the_same_manifest_but_for_where_the_files_are(
    tiny_model, tiny_settings, tmp_path, blob_store
):
    req = request()
    plan = plan_grid(req.parameters)
    rendered = render_stems(tiny_model, req, tiny_settings, plan=plan)
    manifests = {}
    for name, sink in {
        "cli": LocalFolder(tmp_path),
        "service": BlobSink(blob_store, req.generation_request_id),
    }.items():
        records = [write_stem(sink, item, req) for item in rendered]
        # The CLI mixes the stems it holds; the service reads the written stems back.
        audio = [item.audio for item in rendered] if name == "cli" else None
        delivery = finish_set(
            sink, req, records, plan=plan, upload=None, audio=audio, model_id="tiny"
        )
        assert json.loads(sink.read(delivery.manifest_file)) == delivery.manifest
        manifests[name] = delivery.manifest
    cli, service = manifests["cli"], manifests["service"]
    assert [s["file"] for s in cli["stems"]] == ["bass.wav", "drums.wav"]
    assert [s["file"] for s in service["stems"]] == [
        "generations/same-request/bass.wav",
        "generations/same-request/drums.wav",
    ]
    assert all(s["blob_url"] is None for s in cli["stems"])
    assert all(s["blob_url"].endswith(s["file"]) for s in service["stems"])

    def without_location(manifest):
        rest = {k: v for k, v in manifest.items() if k not in CLOCK | {"stems", "mix"}}
        stems = [{k: v for k, v in s.items() if k not in LOCATION} for s in manifest["stems"]]
        mix = {k: v for k, v in manifest["mix"].items() if k not in LOCATION}
        return rest, stems, mix

    cli_rest, cli_stems, cli_mix = without_location(cli)
    service_rest, service_stems, service_mix = without_location(service)
    assert cli_rest == service_rest and cli_stems == service_stems
    # The mix is measured on float stems (CLI) or on their 16-bit files (service): the
    # same to within the files' quantisation.
    for key in ("loudness_lufs", "true_peak_dbtp"):
        assert cli_mix.pop(key) == pytest.approx(service_mix.pop(key), abs=0.05)
    assert cli_mix == service_mix
    assert cli["timings"].keys() == service["timings"].keys()
