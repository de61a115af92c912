/**
 * Paints a frame on a 2D canvas context: same geometry as remote_kernel/drawing/svg.py
 * (y down, shapes by their centre, degrees clockwise, stroke width 2, round joins).
 */

import { IShape, parseColor } from './scene';
import { IFrame } from './replay';

export const STROKE_WIDTH = 2;

function css(color: string): string | null {
  const [r, g, b, a] = parseColor(color);
  return a === 0 ? null : `rgba(${r},${g},${b},${a / 255})`;
}

function rotateAbout(ctx: CanvasRenderingContext2D, cx: number, cy: number, deg: number): void {
  if (deg) {
    ctx.translate(cx, cy);
    ctx.rotate((deg * Math.PI) / 180); // clockwise on a y-down canvas
    ctx.translate(-cx, -cy);
  }
}

function fillAndStroke(ctx: CanvasRenderingContext2D, fill: string, stroke: string): void {
  const f = css(fill);
  const s = css(stroke);
  if (f) {
    ctx.fillStyle = f;
    ctx.fill();
  }
  if (s) {
    ctx.strokeStyle = s;
    ctx.stroke();
  }
}

function paintShape(ctx: CanvasRenderingContext2D, shape: IShape): void {
  const n = (key: string) => shape[key] as number;
  if (shape.kind === 'line') {
    const stroke = css(shape.color as string);
    if (!stroke) {
      return;
    }
    rotateAbout(ctx, (n('x1') + n('x2')) / 2, (n('y1') + n('y2')) / 2, shape.angle);
    ctx.beginPath();
    ctx.moveTo(n('x1'), n('y1'));
    ctx.lineTo(n('x2'), n('y2'));
    ctx.strokeStyle = stroke;
    ctx.stroke();
    return;
  }
  const x = n('x');
  const y = n('y');
  rotateAbout(ctx, x, y, shape.angle);
  ctx.beginPath();
  if (shape.kind === 'circle') {
    ctx.arc(x, y, Math.abs(n('radius')), 0, 2 * Math.PI);
  } else {
    const w = Math.abs(n('width'));
    const h = Math.abs(n('height'));
    if (shape.kind === 'rect') {
      ctx.rect(x - w / 2, y - h / 2, w, h);
    } else {
      // isosceles, apex up, inside the w×h box centred on (x, y)
      ctx.moveTo(x, y - h / 2);
      ctx.lineTo(x + w / 2, y + h / 2);
      ctx.lineTo(x - w / 2, y + h / 2);
      ctx.closePath();
    }
  }
  fillAndStroke(ctx, shape.fill as string, shape.border as string);
}

/** Clears and paints the whole frame; `scale` maps drawing pixels to device pixels. */
export function paintFrame(ctx: CanvasRenderingContext2D, frame: IFrame, scale: number): void {
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.globalAlpha = 1;
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.setTransform(scale, 0, 0, scale, 0, 0);
  const bg = css(frame.bgcolor);
  if (bg) {
    ctx.fillStyle = bg;
    ctx.fillRect(0, 0, frame.width, frame.height);
  }
  ctx.lineWidth = STROKE_WIDTH;
  ctx.lineJoin = 'round';
  for (const item of frame.items) {
    if (item.alpha <= 0) {
      continue;
    }
    ctx.save();
    ctx.globalAlpha = Math.min(1, item.alpha);
    if ('shape' in item) {
      paintShape(ctx, item.shape);
    } else {
      const fill = css(item.color);
      if (fill) {
        ctx.beginPath();
        item.polygon.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
        ctx.closePath();
        ctx.fillStyle = fill;
        ctx.fill();
      }
    }
    ctx.restore();
  }
}
