"""The pure slice-by-slice engine behind the napari widget (no Qt, no napari)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from daclip_plugin import Step, api, stacks
from daclip_plugin.errors import Cancelled, DaclipError, InvalidOptionError, PluginError, UnknownNameError

#: A plugin with fake restorers and a classifier, installed through a real entry point.
FAKE_PLUGIN = """
    import threading
    import time

    import numpy as np
    from daclip_plugin import Cancelled, Classifier, Restorer, Step, hookimpl

    DEGRADATIONS = ("motion-blurry", "hazy", "jpeg-compressed", "low-light", "noisy",
                    "raindrop", "rainy", "shadowed", "snowy", "uncompleted")
    CALLS = []

    class Steps(Restorer):
        '''Inverts the image in `steps` steps, reporting each; honours should_stop.'''
        name = "steps"

        def restore(self, image, *, progress=None, should_stop=None, steps=4, delay=0.0, seed=None):
            call = {"shape": image.shape, "seed": seed, "thread": threading.current_thread().name, "done": 0}
            CALLS.append(call)
            for k in range(1, steps + 1):
                if should_stop is not None and should_stop():
                    raise Cancelled("stopped by request")
                time.sleep(delay)
                call["done"] = k
                if progress is not None:
                    progress(k, steps)
            return 1.0 - image

    class Slow(Steps):
        name = "slow"

        def restore(self, image, *, progress=None, should_stop=None, steps=400, delay=0.01, seed=None):
            return super().restore(image, progress=progress, should_stop=should_stop, steps=steps, delay=delay, seed=seed)

    class Deaf(Restorer):
        '''Reports progress but never polls should_stop.'''
        name = "deaf"

        def restore(self, image, *, progress=None, **options):
            for k in range(1, 51):
                time.sleep(0.002)
                progress(k, 50)
            return image

    class Silent(Restorer):
        '''Never reports progress.'''
        name = "silent"

        def restore(self, image, **options):
            return image * 0.5

    class Yielding(Restorer):
        '''A generator restorer: inverts the image in `steps` steps, one Step each.'''
        name = "yielding"

        def iter_restore(self, image, *, steps=4, delay=0.0):
            call = {"thread": threading.current_thread().name, "done": 0}
            CALLS.append(call)
            for k in range(1, steps + 1):
                time.sleep(delay)
                call["done"] = k
                yield Step(k, steps)
            return 1.0 - image

    class Broken(Restorer):
        name = "broken"

        def restore(self, image, **options):
            raise ValueError("the flux capacitor is broken")

    class Brightness(Classifier):
        '''10 degradations; "low-light" wins on dark images, "hazy" on bright ones.'''
        name = "steps"

        def classify(self, image, *, device="auto"):
            bright = float(image.mean())
            scores = {name: 0.02 for name in DEGRADATIONS}
            scores["hazy"] += 0.8 * bright
            scores["low-light"] += 0.8 * (1 - bright)
            total = sum(scores.values())
            return {name: value / total for name, value in scores.items()}

    @hookimpl
    def register_restorers(register):
        for cls in (Steps, Slow, Deaf, Silent, Yielding, Broken):
            register(cls())

    @hookimpl
    def register_classifiers(register):
        register(Brightness())
"""


@pytest.fixture
def fake(install_plugin, fresh_plugins):
    install_plugin("fakeplug", FAKE_PLUGIN)
    fresh_plugins.reload_plugins()
    import fakeplug_mod

    fakeplug_mod.CALLS.clear()
    return fakeplug_mod


class LazyArray:
    """A lazy array that records which slices were read and refuses to be read whole."""

    def __init__(self, data):
        self._data = data
        self.shape, self.dtype, self.ndim = data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, index):
        self.reads.append(index)
        return self._data[index].copy()

    def __array__(self, *args, **kwargs):
        raise AssertionError("the whole array was read")


def test_all_slices_of_a_uint16_stack(fake):
    data = np.random.default_rng(0).integers(0, 65535, (3, 2, 5, 6), dtype=np.uint16)
    before = data.copy()
    events = []
    result = stacks.restore_stack(data, "steps", progress=events.append)
    assert result.data.dtype == np.uint16 and result.data.shape == data.shape
    np.testing.assert_array_equal(result.data, 65535 - data)
    np.testing.assert_array_equal(data, before)  # the source is never modified
    assert result.indices == [(t, z) for t in range(3) for z in range(2)] and result.offset == (0, 0)
    # one event when a slice starts, then one per step
    assert len(events) == 6 * 5
    assert events[-1] == stacks.StackProgress("restore", (2, 1), 5, 6, 4, 4)
    assert events[-1].describe() == "slice 6/6, step 4/4"
    order = [(event.slice, event.step) for event in events]
    assert order == sorted(order)  # slices in turn, each step after the one before


def test_current_slice_only(fake):
    data = np.random.default_rng(1).random((4, 7, 5)).astype(np.float32)
    result = stacks.restore_stack(data, "steps", index=(2,))
    assert result.data.shape == (1, 7, 5) and result.offset == (2,) and result.indices == [(2,)]
    np.testing.assert_allclose(result.data[0], 1 - data[2], atol=1e-6)
    with pytest.raises(DaclipError, match="outside"):
        stacks.restore_stack(data, "steps", index=(4,))
    with pytest.raises(DaclipError, match="1 entries"):
        stacks.restore_stack(data, "steps", index=(0, 0))


def test_rgba_stack_keeps_alpha(fake):
    data = np.random.default_rng(2).integers(0, 255, (2, 4, 5, 4), dtype=np.uint8)
    result = stacks.restore_stack(data, "steps", rgb=True)
    assert result.data.shape == data.shape and result.data.dtype == np.uint8
    np.testing.assert_array_equal(result.data[..., :3], 255 - data[..., :3])
    np.testing.assert_array_equal(result.data[..., 3], data[..., 3])


def test_lazy_arrays_are_read_slice_by_slice(fake):
    dask = pytest.importorskip("dask.array")
    source = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    lazy = LazyArray(source)
    result = stacks.restore_stack(lazy, "steps")
    assert lazy.reads == [(0,), (1,), (2,)]
    np.testing.assert_array_equal(result.data, 255 - source)
    darr = dask.from_array(source, chunks=(1, 4, 5))
    np.testing.assert_array_equal(stacks.restore_stack(darr, "steps").data, 255 - source)


@pytest.mark.parametrize(
    "data, rgb, message",
    [
        (np.zeros((4, 4), complex), False, "complex"),
        (np.zeros((4, 4), bool), False, "boolean"),
        (np.zeros((4, 4), object), False, "unsupported"),
        (np.zeros((4,), np.uint8), False, "too few axes"),
        (np.zeros((4, 4, 2), np.uint8), True, "3 or 4 channels"),
        (np.zeros((0, 4, 4), np.uint8), False, "empty"),
    ],
)
def test_unsupported_data_is_a_clear_error(fake, data, rgb, message):
    with pytest.raises(DaclipError, match=message):
        stacks.restore_stack(data, "steps", rgb=rgb)
    with pytest.raises(DaclipError, match=message):
        stacks.classify_stack(data, "steps", rgb=rgb)


def test_unknown_restorer_fails_before_any_work(fake):
    with pytest.raises(UnknownNameError, match="nope"):
        stacks.restore_stack(LazyArray(np.zeros((2, 3, 3))), "nope")


def test_classification_per_slice_and_mean(fake):
    data = np.stack([np.full((4, 4), 10, np.uint8), np.full((4, 4), 240, np.uint8)])
    result = stacks.classify_stack(data, "steps")
    assert result.data is None and set(result.probabilities) == {(0,), (1,)}
    assert max(result.probabilities[(0,)], key=result.probabilities[(0,)].get) == "low-light"
    assert max(result.probabilities[(1,)], key=result.probabilities[(1,)].get) == "hazy"
    mean = result.mean_probabilities
    assert len(mean) == 10 and sum(mean.values()) == pytest.approx(1)
    assert list(mean.values()) == sorted(mean.values(), reverse=True)
    # restoring with a classifier records each slice's probabilities
    restored = stacks.restore_stack(data, "steps", classifier="steps", index=(1,))
    assert list(restored.probabilities) == [(1,)]


def _run_to_end(generator):
    events = []
    while True:
        try:
            events.append(next(generator))
        except StopIteration as stop:
            return events, stop.value


@pytest.mark.parametrize("restorer", ["yielding", "steps"])
def test_generator_yields_every_step_and_returns_the_result(fake, restorer):
    data = np.zeros((2, 3, 3), np.float32)
    events, result = _run_to_end(stacks.iter_restore_stack(data, restorer, steps=3))
    assert [(e.slice, e.step, e.steps) for e in events] == [(s, k, 3 if k else 0) for s in range(2) for k in range(4)]
    np.testing.assert_array_equal(result.data, np.ones_like(data))
    # a generator restorer runs in the consumer's thread; a callback one in a helper thread
    expected = threading.current_thread().name if restorer == "yielding" else "daclip-steps"
    assert [call["thread"] for call in fake.CALLS] == [expected, expected]
    assert stacks.restore_stack(data, restorer, steps=3).data.tolist() == result.data.tolist()
    classified = list(stacks.iter_classify_stack(data, "steps"))
    assert [e.stage for e in classified] == ["classify", "classify"]


def test_a_generator_restorer_through_the_python_api(fake):
    image = np.full((4, 5), 0.25, np.float32)
    reports = []
    np.testing.assert_allclose(api.restore(image, "yielding", steps=3, progress=lambda d, t: reports.append((d, t))), 0.75)
    assert reports == [(1, 3), (2, 3), (3, 3)]
    work = api.iter_restore(image, "yielding", steps=2)
    assert [next(work), next(work)] == [Step(1, 2), Step(2, 2)]
    with pytest.raises(StopIteration) as end:
        next(work)
    np.testing.assert_allclose(end.value.value, 0.75)
    with pytest.raises(Cancelled, match="after 1 of 3 steps"):
        api.restore(image, "yielding", steps=3, progress=lambda d, t: reports.append(d), should_stop=lambda: len(reports) > 3)
    # a callback restorer through the generator API: its steps, from a helper thread
    assert [step.done for step in api.iter_restore(image, "steps", steps=2)] == [1, 2]


def test_a_generator_restorer_stops_within_one_step(fake):
    stop = threading.Event()
    seen = []
    with pytest.raises(Cancelled):
        for event in stacks.iter_restore_stack(np.zeros((2, 4, 4)), "yielding", steps=50, should_stop=stop.is_set):
            seen.append(event)
            if event.step == 3:
                stop.set()
    assert seen[-1].step == 3 and [call["done"] for call in fake.CALLS] == [3]
    # without a stop flag, a consumer that stops iterating stops the work
    generator = stacks.iter_restore_stack(np.zeros((4, 4)), "yielding", steps=50)
    for event in generator:
        if event.step == 2:
            break
    generator.close()
    assert fake.CALLS[-1]["done"] == 2


def test_cancel_stops_within_one_step(fake):
    stop = threading.Event()
    events = []

    def progress(event):
        events.append(event)
        if event.step == 2:
            stop.set()

    with pytest.raises(Cancelled):
        stacks.restore_stack(np.zeros((3, 4, 4)), "steps", steps=10, progress=progress, should_stop=stop.is_set)
    assert events[-1].step == 2 and events[-1].slice == 0
    # a restorer that never polls should_stop is stopped at its next progress report
    events.clear()
    stop.clear()
    with pytest.raises(Cancelled):
        stacks.restore_stack(np.zeros((4, 4)), "deaf", progress=progress, should_stop=stop.is_set)
    assert events[-1].step == 2


def test_generator_cancel_and_errors_reach_the_consumer(fake):
    stop = threading.Event()
    generator = stacks.iter_restore_stack(np.zeros((4, 4)), "slow", should_stop=stop.is_set)
    next(generator)
    stop.set()
    started = time.perf_counter()
    with pytest.raises(Cancelled):
        for _ in generator:
            pass
    assert time.perf_counter() - started < 2
    with pytest.raises(PluginError, match="restorer 'broken' \\(plugin 'fakeplug'\\) failed: ValueError: the flux capacitor"):
        list(stacks.iter_restore_stack(np.zeros((4, 4)), "broken"))


def test_closing_the_generator_stops_the_helper_thread(fake):
    generator = stacks.iter_restore_stack(np.zeros((4, 4)), "slow")
    while next(generator).step < 1:  # until the helper thread has started
        pass
    generator.close()
    deadline = time.perf_counter() + 3
    while any(t.name == "daclip-slow" for t in threading.enumerate()) and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "daclip-slow" for t in threading.enumerate())
    assert len(fake.CALLS) == 1


def test_a_restorer_that_reports_nothing_still_gives_slice_progress(fake):
    events = []
    stacks.restore_stack(np.zeros((2, 3, 3)), "silent", progress=events.append)
    assert [(e.slice, e.step, e.steps) for e in events] == [(0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1)]


def test_settings_reach_only_components_that_take_them(fake):
    from daclip_plugin import api, options

    def applicable(component, settings):
        return options.of(component).applicable(settings)

    settings = {"model": "tiny", "sampler": "sde", "seed": 3, "device": "cpu", "steps": 10}
    # undeclared components: the names their signatures give
    assert applicable(api.get_restorer("steps"), settings) == {"seed": 3, "steps": 10}
    assert applicable(api.get_restorer("deaf"), settings) == {}  # **options gets nothing
    assert applicable(api.get_classifier("steps"), settings) == {"device": "cpu"}
    # declared ones: what they declare, while it applies (steps only with the MaRS sampler)
    daclip = api.get_restorer("daclip")
    assert applicable(daclip, settings) == {"model": "tiny", "sampler": "sde", "seed": 3, "device": "cpu"}
    assert applicable(daclip, {**settings, "sampler": "mars"}) == {**settings, "sampler": "mars"}
    assert applicable(api.get_restorer("daclip-direct"), settings) == {"model": "tiny", "device": "cpu"}


def test_one_rule_pairs_classifiers_with_restorers(fake):
    # the namesake classifier; else daclip for a DA-CLIP restorer; else none (DA-CLIP is not run behind a plugin's back)
    assert api.classifier_for("steps") == "steps"
    assert api.classifier_for("daclip") == api.classifier_for("daclip-direct") == "daclip"
    assert api.classifier_for("slow") is None and not api.steers_itself("slow")
    assert api.steers_itself("daclip") and api.steers_itself("daclip-direct")


def test_a_restorer_not_derived_from_restorer_is_not_steered(monkeypatch):
    class Plain:  # plugins may register any object with a name and a restore method
        name = "plain"

        def restore(self, image, **options):
            return image

    monkeypatch.setattr(api, "get_restorer", lambda name: Plain())
    assert not api.steers_itself("plain")


def test_a_float_stack_is_mapped_by_one_range_for_all_slices(fake):
    frame = np.linspace(5, 105, 64, dtype=np.float32).reshape(8, 8)
    stack = np.stack([frame, frame * 0.1])  # the second slice is dim, not another image
    result = stacks.restore_stack(stack, "steps", steps=1)
    low, high = 0.5, 105.0
    np.testing.assert_allclose(result.data, low + high - stack, rtol=1e-5)  # inverted within the stack's range


def test_generators_check_their_arguments_when_made(fake):
    stack = np.zeros((2, 8, 8), np.float32)
    with pytest.raises(InvalidOptionError, match="value_range"):
        stacks.iter_restore_stack(stack, "steps", value_range=(5, 1))
    with pytest.raises(InvalidOptionError, match="value_range"):
        stacks.iter_classify_stack(stack, "steps", value_range=(5, 1))
    with pytest.raises(UnknownNameError, match="does not take option\\(s\\) seed"):
        stacks.iter_classify_stack(stack, "steps", seed=3)


def test_the_stack_range_leaves_alpha_out_and_holds_64_bit_extremes(fake):
    rgba = np.zeros((2, 8, 8, 4), np.int16)
    rgba[..., :3] = np.arange(8 * 8 * 3).reshape(8, 8, 3) % 1000
    rgba[..., 3] = 30000
    result = stacks.restore_stack(rgba, "steps", rgb=True, steps=1)
    colour = rgba[..., :3]
    np.testing.assert_array_equal(result.data[..., :3], colour.min() + colour.max() - colour)  # inverted in its own range
    np.testing.assert_array_equal(result.data[..., 3], rgba[..., 3])
    big = np.zeros((2, 8, 8), np.uint64)
    big[1, 0, 0] = np.iinfo(np.uint64).max
    assert stacks.restore_stack(big, "steps", steps=1).data.dtype == np.uint64
