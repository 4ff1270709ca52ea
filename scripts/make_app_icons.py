"""Draw the installable app's icons (run once; the PNGs are committed):

    .venv/bin/python scripts/make_app_icons.py

Our own art, simple so that it reads at 48 px: a white SIM card on the site's dark blue, with an
upward arrow (a renewal tops the card up). ``icon-<size>.png`` have rounded corners (purpose
``any``); ``icon-maskable-<size>.png`` fill the square and keep the drawing inside the middle 80%
circle that every platform's mask leaves (purpose ``maskable``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

FOLDER = Path(__file__).resolve().parents[1] / "src/topup/entrypoints/web/portal/static/portal/app"
BLUE = (8, 63, 120, 255)  # --brand-dark of base.css
BRAND = (11, 92, 173, 255)  # --brand
WHITE = (255, 255, 255, 255)
YELLOW = (255, 191, 71, 255)  # --focus
OVERSAMPLE = 4
BASE = 1024  # drawn on a 1024 grid, then scaled down


def draw(*, maskable: bool) -> Image.Image:
    size = BASE * OVERSAMPLE
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)

    def at(value: float) -> int:
        return round(value * OVERSAMPLE)

    if maskable:
        pen.rectangle((0, 0, size, size), fill=BLUE)
        scale, offset = 0.62, BASE * 0.19  # inside the safe circle (radius 40%)
    else:
        pen.rounded_rectangle((0, 0, size - 1, size - 1), radius=at(220), fill=BLUE)
        scale, offset = 0.74, BASE * 0.13

    def box(left: float, top: float, right: float, bottom: float) -> tuple[int, int, int, int]:
        return (
            at(offset + left * scale),
            at(offset + top * scale),
            at(offset + right * scale),
            at(offset + bottom * scale),
        )

    def point(x: float, y: float) -> tuple[int, int]:
        return at(offset + x * scale), at(offset + y * scale)

    # The SIM card: a portrait card with its top-right corner cut off.
    left, top, right, bottom, cut, radius = 190, 40, 834, 984, 210, 70
    card = Image.new("L", (size, size), 0)
    card_pen = ImageDraw.Draw(card)
    card_pen.rounded_rectangle(box(left, top, right, bottom), radius=at(radius * scale), fill=255)
    card_pen.polygon(
        [point(right - cut, top - 5), point(right + 5, top - 5), point(right + 5, top + cut)],
        fill=0,
    )
    image.paste(WHITE, (0, 0), card)
    # The chip, in the site's blue, and the arrow above it.
    pen.rounded_rectangle(box(330, 600, 694, 880), radius=at(40 * scale), fill=BRAND)
    for x in (452, 572):
        pen.rectangle(box(x - 6, 600, x + 6, 880), fill=WHITE)
    pen.rectangle(box(330, 734, 694, 746), fill=WHITE)
    pen.polygon([point(512, 130), point(712, 360), point(590, 360), point(590, 520),
                 point(434, 520), point(434, 360), point(312, 360)], fill=YELLOW)  # fmt: skip
    return image


def main() -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for maskable in (False, True):
        drawn = draw(maskable=maskable)
        for pixels in (192, 512):
            name = f"icon-maskable-{pixels}.png" if maskable else f"icon-{pixels}.png"
            drawn.resize((pixels, pixels), Image.Resampling.LANCZOS).save(
                FOLDER / name, optimize=True
            )
    # The browser tab's icon and the one iOS puts on the home screen (no transparency there).
    drawn = draw(maskable=False)
    drawn.resize((32, 32), Image.Resampling.LANCZOS).save(FOLDER / "favicon-32.png", optimize=True)
    draw(maskable=True).resize((180, 180), Image.Resampling.LANCZOS).save(
        FOLDER / "apple-touch-icon.png", optimize=True
    )


if __name__ == "__main__":
    main()
