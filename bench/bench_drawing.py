"""Decode + render to SVG of a 10,000-command drawing.

    python bench/bench_drawing.py [--repeat N] [--commands N]

Measures, on one payload made by the producer (a turtle square spiral plus shapes, ≈10,000
commands, base64-msgpack): decode (validate) + apply to a fresh canvas store + render the final
state to SVG. Target: median ≤ 200 ms. Also prints the PNG render and the whole Jupyter
translation (bundle with JSON, SVG, PNG) for information.
"""

from __future__ import annotations

import argparse
import statistics
import time

from remote_kernel.drawing import png as png_render
from remote_kernel.drawing.canvas import CanvasStore
from remote_kernel.drawing.codec import decode_payload
from remote_kernel.drawing.jupyter import translate_drawing
from remote_kernel.drawing.producer import Canvas, Color, Colors
from remote_kernel.drawing.svg import render_svg

TARGET_MS = 200.0


def make_payload(n_commands: int) -> tuple[str, int]:
    c = Canvas(800, 600)
    c.rectangle(400, 300, 300, 200, fill=Colors.Yellow, angle=15)
    c.circle(100, 100, 40, fill=Colors.Red)
    c.triangle(700, 100, 60, 80, fill=Color(0, 0, 255, 128), angle=30)
    t = c.create_turtle()
    n = len(c._cmd_history)
    step = 0
    while n < n_commands:  # forward = 5 commands, right = 1
        t.forward(2 + (step % 300))
        t.right(90)
        step += 1
        n += 6
    return c.flush(), n


class _Ctx:
    def __init__(self):
        self.session, self.cell = {}, {}


def measure(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def line(label: str, times: list[float]) -> str:
    return (f"{label:<28} n={len(times):<3} min {min(times):7.1f} ms   median "
            f"{statistics.median(times):7.1f} ms   max {max(times):7.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--commands", type=int, default=10_000)
    args = ap.parse_args()
    payload, n = make_payload(args.commands)
    print(f"payload: {n} commands, {len(payload)} base64 characters")

    def core():
        store = CanvasStore()
        (update,) = store.apply(decode_payload(payload))
        return render_svg(update.canvas)

    core()  # warm-up
    core_times = measure(core, args.repeat)
    print(line("decode + state + SVG", core_times))
    store = CanvasStore()
    (update,) = store.apply(decode_payload(payload))
    if png_render.available():
        print(line("PNG (Pillow)", measure(lambda: png_render.render_png(update.canvas),
                                           max(3, args.repeat // 3))))
    print(line("translate_drawing (all)", measure(lambda: translate_drawing(payload, _Ctx()),
                                                  max(3, args.repeat // 3))))
    median = statistics.median(core_times)
    verdict = "OK" if median <= TARGET_MS else "OVER TARGET"
    print(f"target: median ≤ {TARGET_MS:.0f} ms → {verdict}")
    return 0 if median <= TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
