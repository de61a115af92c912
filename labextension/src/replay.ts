/**
 * Animation planning and in-between frames (pure: no DOM, no clock).
 *
 * Timing of the original renderer: every create/update is one step of STEP_MS with an
 * ease-out, followed by GAP_MS; commands between begin-group and end-group form one step;
 * after stop-anim commands apply at once until resume-anim. Lines grow from (x1,y1) to
 * (x2,y2); other new shapes fade in; updates move/turn/recolour smoothly.
 */

import { Command, IShape, Scene, fillVisible, parseColor } from './scene';

export const STEP_MS = 180;
export const GAP_MS = 120;
/** Drawings older than this (a reopened notebook) are shown as their final frame at once. */
export const FRESH_MS = 30000;

export interface IStep {
  commands: Command[];
  /** false: apply at once, no duration and no gap. */
  animate: boolean;
}

/** Splits commands into steps; keeps the stop-anim state across payloads of one canvas. */
export class StepPlanner {
  stopped = false;

  plan(commands: Command[], animate: boolean): IStep[] {
    const steps: IStep[] = [];
    let group: Command[] | null = null;
    let depth = 0;
    for (const cmd of commands) {
      const name = Array.isArray(cmd) ? cmd[1] : undefined;
      if (name === 'stop-anim') {
        this.stopped = true;
      } else if (name === 'resume-anim') {
        this.stopped = false;
      }
      if (name === 'begin-group') {
        depth++;
        group = group ?? [];
        group.push(cmd);
        continue;
      }
      if (group !== null) {
        group.push(cmd);
        if (name === 'end-group' && --depth === 0) {
          steps.push({ commands: group, animate: animate && !this.stopped });
          group = null;
        }
        continue;
      }
      const moves = name === 'obj' || name === 'update';
      steps.push({ commands: [cmd], animate: animate && moves && !this.stopped });
    }
    if (group !== null) {
      // a group left open at the end of a payload still has to show
      steps.push({ commands: group, animate: animate && !this.stopped });
    }
    return steps;
  }
}

/** Whether a bundle emitted at `emittedAt` (ms since the epoch) should still animate. */
export function isFresh(emittedAt: unknown, now: number): boolean {
  return typeof emittedAt === 'number' && now - emittedAt < FRESH_MS && now - emittedAt > -FRESH_MS;
}

export function easeOut(t: number): number {
  const u = 1 - Math.min(1, Math.max(0, t));
  return 1 - u * u * u;
}

/** What the painter draws: shapes and fill polygons bottom to top, each with an opacity. */
export type DrawItem =
  | { shape: IShape; alpha: number }
  | { polygon: [number, number][]; color: string; alpha: number };

export interface IFrame {
  width: number;
  height: number;
  bgcolor: string;
  items: DrawItem[];
}

function lerp(a: number, b: number, t: number): number {
  return a + (b - a) * t;
}

export function lerpColor(a: string, b: string, t: number): string {
  if (a === b || t >= 1) {
    return b;
  }
  const ca = parseColor(a);
  const cb = parseColor(b);
  const hex = ca.map((v, i) => Math.round(lerp(v, cb[i], t)).toString(16).padStart(2, '0'));
  return '#' + hex.join('');
}

function lerpShape(from: IShape, to: IShape, t: number): IShape {
  const out: IShape = { ...to };
  for (const key of Object.keys(to)) {
    const a = from[key];
    const b = to[key];
    if (key === 'serial' || a === b) {
      continue;
    }
    if (typeof a === 'number' && typeof b === 'number') {
      out[key] = lerp(a, b, t);
    } else if (typeof a === 'string' && typeof b === 'string' && key !== 'kind') {
      out[key] = lerpColor(a, b, t);
    }
  }
  return out;
}

/** The final frame of a scene. */
export function frameOf(scene: Scene): IFrame {
  return betweenFrame(scene, scene, 1);
}

/**
 * The frame `t` (0..1, already eased) of the way from `before` to `after`, where `after` is
 * `before` with one step applied. Objects are matched by id and creation serial, fills by
 * their position in the z-order (items only ever get appended or replaced in place).
 */
export function betweenFrame(before: Scene, after: Scene, t: number): IFrame {
  const shapes = new Map<number, IShape>();
  const alphas = new Map<number, number>();
  after.objects.forEach((shape, oid) => {
    const old = before.objects.get(oid);
    if (t >= 1 || (old && old.serial === shape.serial)) {
      shapes.set(oid, t >= 1 || !old ? shape : lerpShape(old, shape, t));
      alphas.set(oid, 1);
    } else if (shape.kind === 'line') {
      // a new line grows from its start point
      const x1 = shape.x1 as number;
      const y1 = shape.y1 as number;
      shapes.set(oid, { ...shape, x2: lerp(x1, shape.x2 as number, t), y2: lerp(y1, shape.y2 as number, t) });
      alphas.set(oid, 1);
    } else {
      shapes.set(oid, shape);
      alphas.set(oid, t);
    }
  });
  const items: DrawItem[] = [];
  after.items.forEach((item, index) => {
    if ('oid' in item) {
      const shape = shapes.get(item.oid);
      if (shape) {
        items.push({ shape, alpha: alphas.get(item.oid) ?? 1 });
      }
      return;
    }
    if (!fillVisible(item.fill)) {
      return;
    }
    const points = after.fillPoints(item.fill, shapes);
    if (points.length < 3) {
      return;
    }
    const prev = before.items[index];
    const wasVisible = t >= 1 || (prev !== undefined && 'fill' in prev && fillVisible(prev.fill));
    const color =
      wasVisible && prev !== undefined && 'fill' in prev && t < 1
        ? lerpColor(prev.fill.color, item.fill.color, t)
        : item.fill.color;
    items.push({ polygon: points, color, alpha: wasVisible ? 1 : t });
  });
  return {
    width: after.width,
    height: after.height,
    bgcolor: lerpColor(before.bgcolor, after.bgcolor, t),
    items
  };
}
