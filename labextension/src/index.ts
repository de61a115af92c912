/**
 * @remote-kernel/drawing: renders application/vnd.remote-kernel.drawing+json on a canvas.
 *
 * Rank 75 is below the SVG renderer's 80, so this renderer wins over the bundle's SVG
 * fallback. safe: true because nothing from the data is ever parsed as HTML.
 */

import { IRenderMime } from '@jupyterlab/rendermime-interfaces';

import { DrawingWidget, MIME_TYPE } from './widget';

export { DrawingWidget, MIME_TYPE, readDrawing } from './widget';

export const rendererFactory: IRenderMime.IRendererFactory = {
  safe: true,
  mimeTypes: [MIME_TYPE],
  defaultRank: 75,
  createRenderer: options => new DrawingWidget(options)
};

const extension: IRenderMime.IExtension = {
  id: '@remote-kernel/drawing:plugin',
  description: 'Renders remote_kernel drawings on an animated canvas.',
  rendererFactory,
  rank: 75,
  dataType: 'json'
};

export default extension;
