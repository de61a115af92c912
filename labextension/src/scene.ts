/**
 * Canvas state replayed from drawing commands (pure: no DOM).
 *
 * Mirrors remote_kernel/drawing/canvas.py so the canvas shows the same picture as the SVG
 * fallback: every shape is positioned by its centre, `rotate` is relative and `angle` absolute,
 * an `obj` reusing an id replaces the object in place, `begin-fill C` ... `end-fill` fills the
 * polygon of the lines created in between (beneath them), and `fgcolor` is only recorded
 * (objects carry their own colours).
 *
 * The kernel validated the commands already; a command that still does not fit (unknown
 * object, wrong arity) is skipped rather than thrown, so one bad command cannot blank a drawing.
 */

export type Command = unknown[];

export type ShapeKind = 'line' | 'circle' | 'rect' | 'triangle';

export interface IShape {
  kind: ShapeKind;
  /** Creation counter: tells a replaced object (same oid, new `obj`) from the old one. */
  serial: number;
  angle: number;
  [prop: string]: number | string;
}

export interface IFill {
  color: string;
  lines: number[];
  closed: boolean;
}

/** Z-order entry: an object by id, or a fill polygon. */
export type Item = { oid: number } | { fill: IFill };

const LAYOUTS: Record<ShapeKind, string[]> = {
  line: ['x1', 'y1', 'x2', 'y2', 'color'],
  circle: ['x', 'y', 'radius', 'border', 'fill', 'angle'],
  rect: ['x', 'y', 'width', 'height', 'border', 'fill', 'angle'],
  triangle: ['x', 'y', 'width', 'height', 'border', 'fill', 'angle']
};

const COLOR_PROPS = new Set(['color', 'border', 'fill']);

export const TRANSPARENT = '#ffffff00';

function isNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function isColor(v: unknown): v is string {
  return typeof v === 'string' && /^#([0-9a-fA-F]{6}|[0-9a-fA-F]{8})$/.test(v);
}

/** `#rrggbb` or `#rrggbbaa` → [r, g, b, a], each 0..255. */
export function parseColor(color: string): [number, number, number, number] {
  const hex = isColor(color) ? color : '#000000ff';
  const a = hex.length === 9 ? parseInt(hex.slice(7, 9), 16) : 255;
  return [
    parseInt(hex.slice(1, 3), 16),
    parseInt(hex.slice(3, 5), 16),
    parseInt(hex.slice(5, 7), 16),
    a
  ];
}

/** A shape command's list (`["circle", x, y, r, border, fill, angle]`) → shape, or null. */
export function makeShape(spec: unknown, serial: number): IShape | null {
  if (!Array.isArray(spec)) {
    return null;
  }
  const kind = spec[0] as ShapeKind;
  const layout = LAYOUTS[kind];
  if (!layout || spec.length !== layout.length + 1) {
    return null;
  }
  const shape: IShape = { kind, serial, angle: 0 };
  for (let i = 0; i < layout.length; i++) {
    const prop = layout[i];
    const value = spec[i + 1];
    if (COLOR_PROPS.has(prop) ? !isColor(value) : !isNumber(value)) {
      return null;
    }
    shape[prop] = value as number | string;
  }
  return shape;
}

const UPDATABLE: Record<ShapeKind, Set<string>> = {
  line: new Set(['x1', 'y1', 'x2', 'y2', 'color', 'rotate', 'angle']),
  circle: new Set(['x', 'y', 'radius', 'border', 'fill', 'rotate', 'angle']),
  rect: new Set(['x', 'y', 'border', 'fill', 'rotate', 'angle']),
  triangle: new Set(['x', 'y', 'border', 'fill', 'rotate', 'angle'])
};

export class Scene {
  width: number;
  height: number;
  bgcolor = '#ffffffff';
  fgcolor = '#000000ff';
  objects = new Map<number, IShape>();
  items: Item[] = [];
  openFill: IFill | null = null;
  private _serial = 0;

  constructor(width: number, height: number) {
    this.width = width;
    this.height = height;
  }

  /** A deep copy; fills keep their position in `items`, which is how frames match them. */
  clone(): Scene {
    const copy = new Scene(this.width, this.height);
    copy.bgcolor = this.bgcolor;
    copy.fgcolor = this.fgcolor;
    copy._serial = this._serial;
    this.objects.forEach((shape, oid) => copy.objects.set(oid, { ...shape }));
    copy.items = this.items.map(item => {
      if ('fill' in item) {
        const fill = { ...item.fill, lines: [...item.fill.lines] };
        if (item.fill === this.openFill) {
          copy.openFill = fill;
        }
        return { fill };
      }
      return { oid: item.oid };
    });
    return copy;
  }

  /** Apply one command; returns false when it was skipped as malformed. */
  apply(cmd: Command): boolean {
    if (!Array.isArray(cmd) || cmd.length < 2) {
      return false;
    }
    const name = cmd[1];
    switch (name) {
      case 'canvas': {
        if (!isNumber(cmd[2]) || !isNumber(cmd[3])) {
          return false;
        }
        this.width = cmd[2];
        this.height = cmd[3];
        this.bgcolor = isColor(cmd[4]) ? cmd[4] : '#ffffffff';
        this.fgcolor = isColor(cmd[5]) ? cmd[5] : '#000000ff';
        this.objects.clear();
        this.items = [];
        this.openFill = null;
        return true;
      }
      case 'obj': {
        const oid = cmd[2];
        const shape = makeShape(cmd[3], ++this._serial);
        if (!isNumber(oid) || shape === null) {
          return false;
        }
        // Replace in place: keeps z-order and fill membership, as canvas.py does.
        if (!this.objects.has(oid)) {
          this.items.push({ oid });
        }
        this.objects.set(oid, shape);
        if (this.openFill && shape.kind === 'line') {
          this.openFill.lines.push(oid);
        }
        return true;
      }
      case 'update': {
        const shape = isNumber(cmd[2]) ? this.objects.get(cmd[2]) : undefined;
        const prop = cmd[3] as string;
        const value = cmd[4];
        if (!shape || !UPDATABLE[shape.kind].has(prop)) {
          return false;
        }
        if (COLOR_PROPS.has(prop) ? !isColor(value) : !isNumber(value)) {
          return false;
        }
        if (prop === 'rotate') {
          shape.angle = shape.angle + (value as number);
        } else {
          shape[prop] = value as number | string;
        }
        return true;
      }
      case 'bgcolor':
      case 'fgcolor':
        if (!isColor(cmd[2])) {
          return false;
        }
        this[name] = cmd[2];
        return true;
      case 'begin-fill': {
        if (!isColor(cmd[2])) {
          return false;
        }
        this._closeFill();
        this.openFill = { color: cmd[2], lines: [], closed: false };
        this.items.push({ fill: this.openFill });
        return true;
      }
      case 'end-fill':
        this._closeFill();
        return true;
      case 'begin-group':
      case 'end-group':
      case 'stop-anim':
      case 'resume-anim':
        return true; // timing only: handled by the step planner
      default:
        return false;
    }
  }

  /** A fill's polygon from the current coordinates of its lines (canvas.py's fill_points). */
  fillPoints(fill: IFill, objects: Map<number, IShape> = this.objects): [number, number][] {
    const points: [number, number][] = [];
    for (const oid of fill.lines) {
      const line = objects.get(oid);
      if (!line || line.kind !== 'line') {
        continue; // replaced by another shape kind
      }
      const start: [number, number] = [line.x1 as number, line.y1 as number];
      const end: [number, number] = [line.x2 as number, line.y2 as number];
      const last = points[points.length - 1];
      if (!last || last[0] !== start[0] || last[1] !== start[1]) {
        points.push(start);
      }
      points.push(end);
    }
    if (points.length > 1) {
      const first = points[0];
      const last = points[points.length - 1];
      if (first[0] === last[0] && first[1] === last[1]) {
        points.pop();
      }
    }
    return points;
  }

  private _closeFill(): void {
    if (this.openFill) {
      this.openFill.closed = true;
      this.openFill = null;
    }
  }
}

/** A fill is drawn only once closed and holding at least one line (canvas.py's visible_items). */
export function fillVisible(fill: IFill): boolean {
  return fill.closed && fill.lines.length > 0;
}
