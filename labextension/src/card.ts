/**
 * One cluster's card in the sidebar: its name, status and start-up progress, counts,
 * scale/adapt/shutdown, dashboard plots (the pinned ones and every plot its scheduler
 * offers) and "insert code".
 */
import { Widget } from '@lumino/widgets';

import { HubgateError } from './api';
import {
  dashboardPageUrl,
  errorMessage,
  formatAdaptive,
  formatBytes,
  formatCores,
  formatWorkers,
  isFinal
} from './format';
import { clusterTitle, shortId } from './names';
import { IPlot, plotLabel } from './plots';
import { PlotList } from './plotlist';
import { startProgress } from './progress';
import { ICluster } from './types';

/** What a card asks of the panel. */
export interface ICardActions {
  scale(cluster: ICluster, count: number): Promise<string | null>;
  adapt(
    cluster: ICluster,
    minimum: number,
    maximum: number
  ): Promise<string | null>;
  shutdown(cluster: ICluster): Promise<void>;
  dismiss(cluster: ICluster): void;
  plots(cluster: ICluster): Promise<IPlot[]>;
  openDashboard(cluster: ICluster, page: string, label: string): void;
  dashboardWidget(cluster: ICluster, page: string, label: string): Widget;
  insertCode(cluster: ICluster): Promise<void>;
}

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

export function button(
  label: string,
  className: string,
  title = ''
): HTMLButtonElement {
  const node = element(
    'button',
    `jp-Button hubgate-Button ${className}`,
    label
  );
  node.type = 'button';
  if (title) {
    node.title = title;
  }
  return node;
}

function numberInput(value: number, label: string): HTMLInputElement {
  const input = element('input', 'hubgate-NumberInput');
  input.type = 'number';
  input.min = '0';
  input.value = String(value);
  input.setAttribute('aria-label', label);
  return input;
}

let nextId = 0;

export class ClusterCard {
  constructor(
    cluster: ICluster,
    actions: ICardActions,
    pinnedPlots: { name: string; label: string }[]
  ) {
    this._cluster = cluster;
    this._actions = actions;
    const id = `hubgate-card-${++nextId}`;
    this.node = element('section', 'hubgate-ClusterCard');
    this.node.dataset.cluster = cluster.name;
    this.node.setAttribute('aria-labelledby', `${id}-title`);

    // Title: the cluster's name; its id small, in full in the tooltip.
    const head = element('div', 'hubgate-ClusterCard-head');
    const titles = element('div', 'hubgate-ClusterCard-titles');
    this._title = element('h3', 'hubgate-ClusterCard-title');
    this._title.id = `${id}-title`;
    const clusterId = element(
      'span',
      'hubgate-ClusterCard-id',
      shortId(cluster.name)
    );
    clusterId.title = `Cluster id ${cluster.name}`;
    clusterId.setAttribute('aria-label', `id ${cluster.name}`);
    titles.append(this._title, clusterId);
    this._status = element('span', 'hubgate-ClusterCard-status');
    head.append(titles, this._status);

    // Start-up progress: the scheduler, then the workers.
    this._progress = element('div', 'hubgate-Progress');
    this._progressStep = element('div', 'hubgate-Progress-step');
    this._progressBar = element('div', 'hubgate-Progress-bar');
    this._progressBar.setAttribute('role', 'progressbar');
    this._progressBar.setAttribute('aria-valuemin', '0');
    this._progressBar.setAttribute('aria-labelledby', `${id}-progress`);
    this._progressRunning = element('span', 'hubgate-Progress-running');
    this._progressPending = element('span', 'hubgate-Progress-pending');
    this._progressBar.append(this._progressRunning, this._progressPending);
    this._progressSummary = element('div', 'hubgate-Progress-summary');
    this._progressSummary.id = `${id}-progress`;
    this._progressSummary.setAttribute('aria-live', 'polite');
    this._progress.append(
      this._progressStep,
      this._progressBar,
      this._progressSummary
    );

    this._stats = element('div', 'hubgate-ClusterCard-stats');
    this._failure = element('div', 'hubgate-ClusterCard-failure');
    this._failure.setAttribute('role', 'alert');

    // Manual and adaptive scaling; Enter in a number field presses its button.
    this._controls = element('div', 'hubgate-ClusterCard-controls');
    this._workers = numberInput(cluster.workers.requested, 'Workers');
    const scale = button('Scale', 'hubgate-Scale', 'Run this many workers');
    scale.addEventListener('click', () =>
      this._run(async () => {
        const count = this._readCount(this._workers, 'workers');
        return this._actions.scale(this._cluster, count);
      })
    );
    this._minimum = numberInput(cluster.adaptive.minimum ?? 0, 'Minimum');
    this._maximum = numberInput(
      cluster.adaptive.maximum || Math.max(cluster.workers.requested, 4),
      'Maximum'
    );
    const adapt = button('Adapt', 'hubgate-Adapt', 'Scale with the load');
    adapt.addEventListener('click', () =>
      this._run(async () => {
        const minimum = this._readCount(this._minimum, 'minimum');
        const maximum = this._readCount(this._maximum, 'maximum');
        if (maximum < minimum) {
          throw new Error('The maximum must be at least the minimum');
        }
        return this._actions.adapt(this._cluster, minimum, maximum);
      })
    );
    pressOnEnter(this._workers, scale);
    pressOnEnter(this._minimum, adapt);
    pressOnEnter(this._maximum, adapt);
    const manual = element('div', 'hubgate-ClusterCard-row');
    const count = element('span', 'hubgate-ClusterCard-inputs');
    count.append(this._workers);
    manual.append(
      element('span', 'hubgate-ClusterCard-label', 'Workers'),
      count,
      scale
    );
    const adaptive = element('div', 'hubgate-ClusterCard-row');
    const bounds = element('span', 'hubgate-ClusterCard-inputs');
    bounds.append(
      this._minimum,
      element('span', 'hubgate-ClusterCard-to', 'to'),
      this._maximum
    );
    adaptive.append(
      element('span', 'hubgate-ClusterCard-label', 'Adapt'),
      bounds,
      adapt
    );

    // Dashboard: the pinned plots, every plot (searchable), the full dashboard.
    this._dashboard = element('div', 'hubgate-ClusterCard-dashboard');
    const pinned = element('div', 'hubgate-ClusterCard-plots');
    for (const plot of pinnedPlots) {
      const open = button(
        plot.label,
        'hubgate-Plot',
        `Open ${plot.label} in a tab`
      );
      open.dataset.plot = plot.name;
      open.addEventListener('click', () =>
        this._actions.openDashboard(this._cluster, plot.name, plot.label)
      );
      pinned.appendChild(open);
    }
    this._allPlots = button(
      'All plots',
      'hubgate-AllPlots',
      'Every plot this dashboard offers: search, open or drag into the layout'
    );
    this._allPlots.setAttribute('aria-expanded', 'false');
    this._allPlots.addEventListener('click', () => void this._togglePlots());
    this._dashboardLink = element(
      'a',
      'hubgate-DashboardLink',
      'Full dashboard ↗'
    );
    this._dashboardLink.target = '_blank';
    this._dashboardLink.rel = 'noopener';
    this._dashboardLink.title = 'Open the full dashboard in a browser tab';
    const more = element('div', 'hubgate-ClusterCard-plots');
    more.append(this._allPlots, this._dashboardLink);
    this._plotList = new PlotList(
      {
        open: plot =>
          this._actions.openDashboard(
            this._cluster,
            plot.path,
            plotLabel(plot)
          ),
        widget: plot =>
          this._actions.dashboardWidget(
            this._cluster,
            plot.path,
            plotLabel(plot)
          )
      },
      clusterTitle(cluster)
    );
    this._plotsMessage = element('div', 'hubgate-PlotList-message');
    this._plotsMessage.setAttribute('role', 'status');
    this._plotsPanel = element('div', 'hubgate-ClusterCard-allPlots');
    this._plotsPanel.id = `${id}-plots`;
    this._plotsPanel.hidden = true;
    this._plotsPanel.append(this._plotsMessage, this._plotList.node);
    this._allPlots.setAttribute('aria-controls', this._plotsPanel.id);
    this._dashboard.append(pinned, more, this._plotsPanel);

    const footer = element('div', 'hubgate-ClusterCard-row');
    const insert = button(
      'Insert code',
      'hubgate-InsertCode',
      'Connect to this cluster from the active notebook'
    );
    insert.addEventListener('click', () =>
      this._run(async () => {
        await this._actions.insertCode(this._cluster);
        return null;
      })
    );
    this._shutdown = button(
      'Shutdown',
      'jp-mod-warn hubgate-Shutdown',
      'Stop this cluster and its workers'
    );
    this._shutdown.addEventListener('click', () =>
      this._run(async () => {
        await this._actions.shutdown(this._cluster);
        return null;
      })
    );
    footer.append(insert, this._shutdown);
    this._controls.append(manual, adaptive, this._dashboard, footer);

    this._dismiss = button('Dismiss', 'hubgate-Dismiss');
    this._dismiss.addEventListener('click', () =>
      this._actions.dismiss(this._cluster)
    );

    this._message = element('div', 'hubgate-ClusterCard-message');
    this._message.setAttribute('role', 'status');
    this.node.append(
      head,
      this._progress,
      this._stats,
      this._failure,
      this._controls,
      this._dismiss,
      this._message
    );
  }

  readonly node: HTMLElement;

  remove(): void {
    this.node.remove();
  }

  update(cluster: ICluster): void {
    const wasRunning = this._cluster.status === 'RUNNING';
    this._cluster = cluster;
    const title = clusterTitle(cluster);
    this._title.textContent = title;
    this._title.title = title;
    this._status.textContent = cluster.status;
    this.node.dataset.status = cluster.status;
    this._updateProgress(cluster);
    this._stats.textContent = '';
    for (const [label, value] of [
      ['Workers', formatWorkers(cluster)],
      ['Cores', formatCores(cluster.cores)],
      ['Threads', String(cluster.threads ?? '–')],
      ['Memory', formatBytes(cluster.memory)]
    ]) {
      const stat = element('span', 'hubgate-ClusterCard-stat');
      stat.dataset.stat = label.toLowerCase();
      stat.append(element('small', '', label), element('b', '', value));
      this._stats.appendChild(stat);
    }
    const adaptive = formatAdaptive(cluster);
    if (adaptive) {
      this._stats.appendChild(
        element('span', 'hubgate-ClusterCard-adaptive', adaptive)
      );
    }
    const failed = cluster.status === 'FAILED';
    this._failure.hidden = !failed;
    this._failure.textContent = failed
      ? `This cluster failed: ${cluster.reason || 'no reason was given; see its logs'}`
      : '';
    this.node.classList.toggle('hubgate-mod-failed', failed);
    this._controls.hidden = isFinal(cluster);
    this._dismiss.hidden = !failed;
    this._shutdown.disabled = cluster.status === 'STOPPING';
    const page = dashboardPageUrl(cluster, 'status');
    this._dashboard.hidden = page === null;
    if (page) {
      this._dashboardLink.href = page;
    }
    if (wasRunning && cluster.status !== 'RUNNING') {
      this._plotsLoaded = false; // a scheduler that runs again may offer other plots
      this._showPlots(false);
    }
  }

  private _updateProgress(cluster: ICluster): void {
    const progress = startProgress(cluster);
    this._progress.hidden = progress === null;
    if (progress === null) {
      return;
    }
    this._progress.dataset.phase = progress.schedulerStarting
      ? 'scheduler'
      : 'workers';
    this._progressStep.textContent = progress.schedulerStarting
      ? progress.step || 'Starting the scheduler…'
      : 'Scheduler running';
    const total = Math.max(progress.requested, 1);
    this._progressRunning.style.width = `${(100 * progress.running) / total}%`;
    this._progressPending.style.width = `${(100 * progress.pending) / total}%`;
    this._progressBar.setAttribute('aria-valuemax', String(progress.requested));
    this._progressBar.setAttribute('aria-valuenow', String(progress.running));
    this._progressBar.setAttribute('aria-valuetext', progress.summary);
    this._progressSummary.textContent = progress.summary;
    this._progressBar.dataset.running = String(progress.running);
    this._progressBar.dataset.pending = String(progress.pending);
  }

  private async _togglePlots(): Promise<void> {
    const show = this._plotsPanel.hidden;
    this._showPlots(show);
    if (!show) {
      this._allPlots.focus();
      return;
    }
    if (!this._plotsLoaded) {
      await this._loadPlots();
    }
    this._plotList.focusFilter();
  }

  private _showPlots(show: boolean): void {
    this._plotsPanel.hidden = !show;
    this._allPlots.setAttribute('aria-expanded', String(show));
  }

  private async _loadPlots(): Promise<void> {
    this._plotsMessage.textContent = 'Asking the dashboard for its plots…';
    this._plotsMessage.classList.remove('hubgate-mod-error');
    try {
      this._plotList.plots = await this._actions.plots(this._cluster);
      this._plotsLoaded = true;
      this._plotsMessage.textContent = '';
    } catch (err) {
      this._plotsMessage.textContent = `Could not list the plots: ${errorMessage(err)}`;
      this._plotsMessage.classList.add('hubgate-mod-error');
    }
  }

  private _readCount(input: HTMLInputElement, what: string): number {
    const value = Number(input.value);
    if (input.value.trim() === '' || !Number.isInteger(value) || value < 0) {
      throw new Error(
        `The number of ${what} must be a whole number, 0 or more`
      );
    }
    return value;
  }

  /** Run a card action; show its error (or the service's warning) on the card. */
  private async _run(action: () => Promise<string | null>): Promise<void> {
    this._message.textContent = '';
    this._message.classList.remove('hubgate-mod-error');
    try {
      const warning = await action();
      if (warning) {
        this._message.textContent = warning;
      }
    } catch (err) {
      const status = err instanceof HubgateError ? err.status : null;
      console.error('hubgate: action failed', status, err);
      this._message.textContent = errorMessage(err);
      this._message.classList.add('hubgate-mod-error');
    }
  }

  private _cluster: ICluster;
  private _actions: ICardActions;
  private _title: HTMLElement;
  private _status: HTMLElement;
  private _progress: HTMLElement;
  private _progressStep: HTMLElement;
  private _progressBar: HTMLElement;
  private _progressRunning: HTMLElement;
  private _progressPending: HTMLElement;
  private _progressSummary: HTMLElement;
  private _stats: HTMLElement;
  private _failure: HTMLElement;
  private _controls: HTMLElement;
  private _workers: HTMLInputElement;
  private _minimum: HTMLInputElement;
  private _maximum: HTMLInputElement;
  private _dashboard: HTMLElement;
  private _allPlots: HTMLButtonElement;
  private _plotsPanel: HTMLElement;
  private _plotsMessage: HTMLElement;
  private _plotList: PlotList;
  private _plotsLoaded = false;
  private _dashboardLink: HTMLAnchorElement;
  private _shutdown: HTMLButtonElement;
  private _dismiss: HTMLButtonElement;
  private _message: HTMLElement;
}

/** Enter in `input` presses `target` (as in a form). */
function pressOnEnter(
  input: HTMLInputElement,
  target: HTMLButtonElement
): void {
  input.addEventListener('keydown', event => {
    if (event.key === 'Enter') {
      event.preventDefault();
      target.click();
    }
  });
}
