from tidemark.serving import keys


def test_key_format_is_strict():
    good = "tmk_0123456789abcdef_" + "A" * 43
    assert keys.parse(good) == ("0123456789abcdef", "A" * 43)
    for bad in ("", good + "x", good.upper(), "tmk_0123456789abcde_" + "A" * 43, "' OR 1=1 --", good[:-1] + "'"):
        assert keys.parse(bad) is None


def test_hash_binds_the_key_id():
    assert keys._hash("a" * 16, "s") != keys._hash("b" * 16, "s")
