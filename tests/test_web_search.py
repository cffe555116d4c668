"""panel.web_search: LiteLLM's web_search_options for the members that support it; the
sources they cite reach the judge under their answer's label."""

from litellm.types.utils import Message

from chorus_litellm.gateway.llm import citations
from chorus_litellm.testing import FakeCompleter, Reply
from tests.factories import profile, request, run_events

SOURCE = {"url": "https://example.org/raft", "title": "In Search of an Understandable Consensus Algorithm"}


async def test_only_searching_members_get_the_options_and_the_judge_sees_their_sources():
    fake = FakeCompleter(json_models={"judge"}, search_models={"model-a", "model-b"})
    fake.enqueue("model-a", Reply("Raft elects a leader per term.", citations=(SOURCE,)))
    prof = profile(panel={"members": ["model-a", "model-b", "model-c"], "min_quorum": 2, "web_search": True,
                          "web_search_context": "high"})
    await run_events(request(prof), fake)
    options = {c.model: c.params.get("web_search_options") for c in fake.calls}
    assert options == {"model-a": {"search_context_size": "high"}, "model-b": {"search_context_size": "high"},
                       "model-c": None, "judge": None, "writer": None}
    judged = fake.calls_to("judge")[0].messages[-1]["content"]
    assert ("Raft elects a leader per term.\\n\\nSources cited: [1] In Search of an Understandable Consensus "
            "Algorithm <https://example.org/raft>") in judged
    assert "model-a" not in judged  # still anonymous: the source rides under the label


async def test_without_web_search_no_member_is_asked_to_search():
    fake = FakeCompleter(json_models={"judge"}, search_models={"model-a"})
    await run_events(request(profile()), fake)
    assert all("web_search_options" not in c.params for c in fake.calls)


def test_citations_are_read_from_litellm_annotations_once_per_url():
    note = {"type": "url_citation", "url_citation": {"start_index": 0, "end_index": 4, **SOURCE}}
    message = Message(role="assistant", content="Raft", annotations=[note, note])
    assert citations(message.annotations) == (SOURCE,)
    assert citations([{"type": "file_citation", "file_citation": {"file_id": "f"}}, note]) == (SOURCE,)
    assert citations(None) == ()
