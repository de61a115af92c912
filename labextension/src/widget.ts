/**
 * The output widget: one <canvas> per output, its own scene and animation queue.
 *
 * JupyterLab calls renderModel() again on the same widget for update_display_data, so a
 * drawing updated while a cell runs animates only what is new. Nothing is built from the
 * data as HTML: the canvas and error text are made with DOM APIs (safe: true).
 *
 * For tests, the canvas carries data-canvas-id, data-commands (how many commands the scene
 * holds once the queue is drained) and data-animation ("running" | "done").
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { paintFrame } from './paint';
import {
  GAP_MS,
  IStep,
  STEP_MS,
  StepPlanner,
  betweenFrame,
  easeOut,
  frameOf,
  isFresh
} from './replay';
import { Command, Scene } from './scene';

export const MIME_TYPE = 'application/vnd.remote-kernel.drawing+json';

/** Larger drawings are refused instead of allocating a huge canvas. */
const MAX_SIDE = 16384;

interface IDrawing {
  canvas: number;
  width: number;
  height: number;
  commands: Command[];
  newFrom: number;
  emittedAt: unknown;
}

/** Checks the bundle's shape; returns an error message, or the drawing. */
export function readDrawing(data: unknown): IDrawing | string {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return 'drawing data is not a JSON object';
  }
  const d = data as Record<string, unknown>;
  if (d.version !== 1) {
    return `unsupported drawing version ${JSON.stringify(d.version)} (expected 1)`;
  }
  for (const key of ['width', 'height']) {
    const v = d[key];
    if (typeof v !== 'number' || !(v > 0) || v > MAX_SIDE) {
      return `drawing ${key} must be a number in (0, ${MAX_SIDE}], got ${JSON.stringify(v)}`;
    }
  }
  if (!Array.isArray(d.commands)) {
    return 'drawing commands must be a list';
  }
  const newFrom = d.newFrom === undefined ? 0 : d.newFrom;
  if (typeof newFrom !== 'number' || !Number.isInteger(newFrom) || newFrom < 0) {
    return `drawing newFrom must be a non-negative integer, got ${JSON.stringify(d.newFrom)}`;
  }
  return {
    canvas: typeof d.canvas === 'number' ? d.canvas : 0,
    width: d.width as number,
    height: d.height as number,
    commands: d.commands as Command[],
    newFrom: Math.min(newFrom, (d.commands as Command[]).length),
    emittedAt: d.emittedAt
  };
}

export class DrawingWidget extends Widget implements IRenderMime.IRenderer {
  private _mimeType: string;
  private _canvas: HTMLCanvasElement;
  private _error: HTMLDivElement;
  private _scene: Scene | null = null;
  private _planner = new StepPlanner();
  private _canvasId: number | null = null;
  private _received = 0; // commands of the current canvas taken into the scene or the queue
  private _prefix = ''; // JSON of those commands: tells a continuation from a restart
  private _queue: IStep[] = [];
  private _current: { before: Scene; after: Scene; start: number } | null = null;
  private _nextStart = 0;
  private _frameRequest: number | null = null;

  constructor(options: IRenderMime.IRendererOptions) {
    super();
    this._mimeType = options.mimeType;
    this.addClass('rk-drawing');
    this._canvas = document.createElement('canvas');
    this._canvas.dataset.animation = 'done';
    this._error = document.createElement('div');
    this._error.className = 'rk-drawing-error';
    this._error.hidden = true;
    this.node.appendChild(this._canvas);
    this.node.appendChild(this._error);
  }

  renderModel(model: IRenderMime.IMimeModel): Promise<void> {
    const drawing = readDrawing(model.data[this._mimeType]);
    if (typeof drawing === 'string') {
      this._showError(drawing);
      return Promise.resolve();
    }
    this._error.hidden = true;
    this._canvas.hidden = false;
    const now = Date.now();
    const animate = isFresh(drawing.emittedAt, now);
    const { commands, newFrom } = drawing;
    const seen = JSON.stringify(commands.slice(0, this._received));
    const continues =
      this._scene !== null &&
      drawing.canvas === this._canvasId &&
      commands.length >= this._received &&
      seen === this._prefix;
    let start: number;
    if (continues) {
      start = this._received;
    } else {
      this._reset(drawing);
      start = 0;
    }
    if (!animate) {
      this._finishQueue();
    }
    const animateFrom = Math.max(start, newFrom);
    this._enqueue(this._planner.plan(commands.slice(start, animateFrom), false));
    this._enqueue(this._planner.plan(commands.slice(animateFrom), animate));
    this._received = commands.length;
    this._prefix = JSON.stringify(commands);
    this._canvas.dataset.canvasId = String(drawing.canvas);
    this._canvas.dataset.commands = String(commands.length);
    this._tick(now);
    return Promise.resolve();
  }

  protected onBeforeDetach(): void {
    // a detached canvas needs no frames; show the final state when it comes back
    this._finishQueue();
    this._paint();
  }

  dispose(): void {
    this._cancelFrame();
    super.dispose();
  }

  private _reset(drawing: IDrawing): void {
    this._cancelFrame();
    this._scene = new Scene(drawing.width, drawing.height);
    this._planner = new StepPlanner();
    this._canvasId = drawing.canvas;
    this._received = 0;
    this._prefix = '';
    this._queue = [];
    this._current = null;
    this._nextStart = 0;
  }

  private _enqueue(steps: IStep[]): void {
    this._queue.push(...steps);
  }

  /** Applies everything pending at once (stale data, or the widget leaves the page). */
  private _finishQueue(): void {
    this._cancelFrame();
    if (this._current) {
      this._scene = this._current.after;
      this._current = null;
    }
    for (const step of this._queue) {
      step.commands.forEach(cmd => this._scene!.apply(cmd));
    }
    this._queue = [];
    this._nextStart = 0;
  }

  /** Advances the animation to `now` and paints; schedules itself while work remains. */
  private _tick(now: number): void {
    this._frameRequest = null;
    const scene = this._scene;
    if (!scene || this.isDisposed) {
      return;
    }
    for (;;) {
      const current = this._current;
      if (current) {
        const t = (now - current.start) / STEP_MS;
        if (t < 1) {
          this._paint(betweenFrame(current.before, current.after, easeOut(t)));
          this._requestFrame();
          return;
        }
        this._scene = current.after;
        this._current = null;
        this._nextStart = current.start + STEP_MS + GAP_MS;
      }
      const step = this._queue[0];
      if (!step) {
        break;
      }
      if (!step.animate) {
        step.commands.forEach(cmd => this._scene!.apply(cmd));
        this._queue.shift();
        continue;
      }
      if (now < this._nextStart) {
        this._paint();
        this._requestFrame();
        return;
      }
      this._queue.shift();
      const after = this._scene!.clone();
      step.commands.forEach(cmd => after.apply(cmd));
      // a late frame starts the step now rather than skipping it
      this._current = { before: this._scene!, after, start: Math.max(now, this._nextStart) };
    }
    this._paint();
    this._canvas.dataset.animation = 'done';
  }

  private _paint(frame = this._scene ? frameOf(this._scene) : null): void {
    if (!frame) {
      return;
    }
    const canvas = this._canvas;
    const scale = window.devicePixelRatio || 1;
    const w = Math.max(1, Math.round(frame.width * scale));
    const h = Math.max(1, Math.round(frame.height * scale));
    if (canvas.width !== w || canvas.height !== h) {
      canvas.width = w;
      canvas.height = h;
    }
    canvas.style.width = `${frame.width}px`;
    canvas.style.height = `${frame.height}px`;
    const ctx = canvas.getContext('2d');
    if (ctx) {
      paintFrame(ctx, frame, scale);
    }
  }

  private _requestFrame(): void {
    this._canvas.dataset.animation = 'running';
    if (this._frameRequest === null) {
      this._frameRequest = requestAnimationFrame(() => this._tick(Date.now()));
    }
  }

  private _cancelFrame(): void {
    if (this._frameRequest !== null) {
      cancelAnimationFrame(this._frameRequest);
      this._frameRequest = null;
    }
  }

  private _showError(message: string): void {
    this._finishQueue();
    this._canvas.hidden = true;
    this._canvas.dataset.animation = 'done';
    this._error.textContent = `Cannot show drawing: ${message}`;
    this._error.hidden = false;
    this._scene = null; // the next valid bundle starts over
  }
}
