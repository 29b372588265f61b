/**
 * A card's list of every dashboard plot its scheduler offers: searchable, each item
 * opens as a JupyterLab pane (click, Enter or Space) or is dragged into the layout.
 *
 * Dragging uses Lumino's drag protocol, the one JupyterLab's dock panel accepts: a
 * `Drag` whose mime data holds a widget factory under `application/vnd.lumino.widget-factory`
 * (dask-labextension's plot list works the same way, so its users know the gesture).
 */
import { MimeData } from '@lumino/coreutils';
import { Drag } from '@lumino/dragdrop';
import { Widget } from '@lumino/widgets';

import { IPlot, filterPlots, plotLabel } from './plots';

export const WIDGET_FACTORY_MIME = 'application/vnd.lumino.widget-factory';
// Pixels the pointer moves with the button down before a press becomes a drag.
const DRAG_THRESHOLD = 5;

/** What the list asks of the card. */
export interface IPlotListHost {
  open(plot: IPlot): void;
  /** A pane for `plot`, for the dock panel to place where it is dropped. */
  widget(plot: IPlot): Widget;
}

let nextId = 0;

export class PlotList {
  constructor(host: IPlotListHost, clusterTitle: string) {
    this._host = host;
    this.node = document.createElement('div');
    this.node.className = 'hubgate-PlotList';
    const id = `hubgate-plotlist-${++nextId}`;

    this._filter = document.createElement('input');
    this._filter.type = 'search';
    this._filter.className = 'hubgate-PlotList-filter';
    this._filter.placeholder = 'Search plots';
    this._filter.setAttribute(
      'aria-label',
      `Search the plots of ${clusterTitle}`
    );
    this._filter.setAttribute('aria-controls', id);
    this._filter.addEventListener('input', () => this._render());
    this._filter.addEventListener('keydown', event => {
      if (event.key === 'ArrowDown') {
        event.preventDefault();
        this._items()[0]?.focus();
      } else if (event.key === 'Escape' && this._filter.value) {
        event.stopPropagation();
        this._filter.value = '';
        this._render();
      }
    });

    this._list = document.createElement('ul');
    this._list.className = 'hubgate-PlotList-items';
    this._list.id = id;
    this._list.setAttribute('aria-label', `Plots of ${clusterTitle}`);
    this._list.addEventListener('keydown', event => this._onListKey(event));

    this._count = document.createElement('div');
    this._count.className = 'hubgate-PlotList-count';
    this._count.setAttribute('aria-live', 'polite');

    this.node.append(this._filter, this._count, this._list);
  }

  readonly node: HTMLElement;

  get plots(): IPlot[] {
    return this._plots;
  }

  set plots(plots: IPlot[]) {
    this._plots = plots;
    this._render();
  }

  focusFilter(): void {
    this._filter.focus();
  }

  private _items(): HTMLButtonElement[] {
    return [...this._list.querySelectorAll('button')];
  }

  private _render(): void {
    const shown = filterPlots(this._plots, this._filter.value);
    this._list.textContent = '';
    for (const plot of shown) {
      const item = document.createElement('li');
      const open = document.createElement('button');
      open.type = 'button';
      open.className = 'hubgate-PlotList-item';
      open.dataset.plot = plot.path;
      open.textContent = plotLabel(plot);
      open.title = `Open ${plot.title} in a tab, or drag it into the layout`;
      open.addEventListener('click', () => {
        if (this._dragged) {
          this._dragged = false; // the click that ends a drag opens nothing more
          return;
        }
        this._host.open(plot);
      });
      open.addEventListener('pointerdown', event => this._press(event, plot));
      item.appendChild(open);
      this._list.appendChild(item);
    }
    const total = this._plots.length;
    this._count.textContent =
      shown.length === total
        ? `${total} plot${total === 1 ? '' : 's'}`
        : `${shown.length} of ${total} plots`;
  }

  private _onListKey(event: KeyboardEvent): void {
    const items = this._items();
    const index = items.indexOf(document.activeElement as HTMLButtonElement);
    if (index < 0) {
      return;
    }
    let next: number | null = null;
    if (event.key === 'ArrowDown') {
      next = Math.min(index + 1, items.length - 1);
    } else if (event.key === 'ArrowUp') {
      if (index === 0) {
        event.preventDefault();
        this._filter.focus();
        return;
      }
      next = index - 1;
    } else if (event.key === 'Home') {
      next = 0;
    } else if (event.key === 'End') {
      next = items.length - 1;
    }
    if (next !== null) {
      event.preventDefault();
      items[next].focus();
    }
  }

  /** A press on an item: a drag once the pointer moves far enough, else a click. */
  private _press(event: PointerEvent, plot: IPlot): void {
    if (event.button !== 0) {
      return;
    }
    this._dragged = false;
    const source = event.currentTarget as HTMLElement;
    const startX = event.clientX;
    const startY = event.clientY;
    const move = (moved: PointerEvent) => {
      if (
        Math.abs(moved.clientX - startX) + Math.abs(moved.clientY - startY) <
        DRAG_THRESHOLD
      ) {
        return;
      }
      stop();
      this._drag(source, plot, moved.clientX, moved.clientY);
    };
    const stop = () => {
      document.removeEventListener('pointermove', move, true);
      document.removeEventListener('pointerup', stop, true);
    };
    document.addEventListener('pointermove', move, true);
    document.addEventListener('pointerup', stop, true);
  }

  private _drag(
    source: HTMLElement,
    plot: IPlot,
    clientX: number,
    clientY: number
  ): void {
    this._dragged = true;
    const mimeData = new MimeData();
    mimeData.setData(WIDGET_FACTORY_MIME, () => this._host.widget(plot));
    const image = source.cloneNode(true) as HTMLElement;
    image.classList.add('hubgate-PlotList-dragImage');
    const drag = new Drag({
      mimeData,
      dragImage: image,
      proposedAction: 'copy',
      supportedActions: 'copy',
      source: this
    });
    void drag.start(clientX, clientY).then(() => {
      // A drop elsewhere sends no click here; forget the drag for the next press.
      window.setTimeout(() => (this._dragged = false));
    });
  }

  private _host: IPlotListHost;
  private _filter: HTMLInputElement;
  private _list: HTMLUListElement;
  private _count: HTMLElement;
  private _plots: IPlot[] = [];
  private _dragged = false;
}
