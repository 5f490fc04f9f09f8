"""The attack stage keeps every example's AutoAttack outcome, in index order across blocks (for McNemar)."""

from pipeline.attack import per_example


def test_per_example_outcomes_are_concatenated_in_block_order():
    blocks = [{"start": 0, "stop": 3, "correct": "101"}, {"start": 3, "stop": 7, "correct": "0011"}]
    assert per_example(blocks) == "1010011"
