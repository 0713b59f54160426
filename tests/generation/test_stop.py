from aigc.generation import StopMatcher


def feed(matcher: StopMatcher, pieces: list[str]) -> list[str]:
    return [matcher.push(p) for p in pieces]


def test_stop_string_split_across_pieces_is_caught_and_never_emitted():
    m = StopMatcher(["###"])
    out = feed(m, ["Hello #", "#", "# world"])
    assert "".join(out) == "Hello "
    assert out[0] == "Hello "  # the "#" that might start "###" is held back
    assert m.stopped and m.matched == "###"
    assert m.push("more") == "" and m.finish() == ""


def test_held_text_is_released_once_it_cannot_start_a_stop_string():
    m = StopMatcher(["###"])
    assert m.push("a #") == "a "
    assert m.push("#b") == "##b"
    assert not m.stopped


def test_holdback_released_at_finish_when_not_matched():
    m = StopMatcher(["END"])
    assert m.push("the EN") == "the "
    assert m.finish() == "EN"
    assert not m.stopped


def test_earliest_of_several_stop_strings_wins():
    m = StopMatcher(["world", "o w"])
    assert "".join(feed(m, ["hello", " world"])) == "hell"
    assert m.matched == "o w"


def test_stop_inside_one_piece_cuts_the_rest():
    m = StopMatcher(["\n\n"])
    assert m.push("line one\n\nline two") == "line one"
    assert m.stopped


def test_no_stop_strings_passes_text_through():
    m = StopMatcher([])
    assert feed(m, ["a", "b"]) == ["a", "b"] and m.finish() == ""


def test_longest_possible_prefix_is_held():
    m = StopMatcher(["abcab"])
    assert m.push("xxabcab"[:6]) == "xx"  # "abca" may still become "abcab"
    assert m.push("c") == "abcac"
    assert m.finish() == ""
