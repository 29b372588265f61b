/**
 * The "Dask clusters" sidebar: a New cluster button with the options form, and a card
 * per cluster of the user's (however created) with live counts and controls.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { HubgateError, requestAPI } from './api';
import {
  DASHBOARD_PLOTS,
  dashboardPageUrl,
  errorMessage,
  formatAdaptive,
  formatBytes,
  formatCores,
  formatWorkers,
  isFinal
} from './format';
import { OptionsForm } from './optionsform';
import { ICluster, IClustersReply, IOptionsReply, IScaleReply } from './types';

/** What the panel asks of the application. */
export interface IPanelHost {
  openDashboard(cluster: ICluster, page: string, label: string): void;
  insertCode(cluster: ICluster): Promise<void>;
}

export interface IPanelSettings {
  /** Milliseconds between refreshes of the cluster list. */
  refreshInterval: number;
  /** Dashboard plots offered as buttons. */
  plots: { name: string; label: string }[];
}

export const DEFAULT_SETTINGS: IPanelSettings = {
  refreshInterval: 2000,
  plots: DASHBOARD_PLOTS.slice(0, 3)
};

// FAILED is listed so a failed cluster shows its reason until dismissed.
const LISTED_STATUSES = 'pending,running,stopping,failed';

function element<K extends keyof HTMLElementTagNameMap>(
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

function button(
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
  node.title = title;
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

export class ClusterPanel extends Widget {
  constructor(host: IPanelHost, settings: IPanelSettings = DEFAULT_SETTINGS) {
    super();
    this._host = host;
    this._settings = settings;
    this.id = 'hubgate-clusters';
    this.addClass('hubgate-ClusterPanel');
    this.title.caption = 'Dask clusters';

    const header = element('div', 'hubgate-ClusterPanel-header');
    header.appendChild(
      element('h2', 'hubgate-ClusterPanel-title', 'Dask clusters')
    );
    this._newButton = button('New cluster', 'jp-mod-accept hubgate-NewCluster');
    this._newButton.addEventListener('click', () => void this.showForm());
    header.appendChild(this._newButton);
    this._formHost = element('div', 'hubgate-ClusterPanel-form');
    this._formHost.hidden = true;
    this._message = element('div', 'hubgate-ClusterPanel-message');
    this._message.setAttribute('role', 'status');
    this._list = element('div', 'hubgate-ClusterPanel-list');
    this._empty = element(
      'div',
      'hubgate-ClusterPanel-empty',
      'No clusters yet. Create one with New cluster, or from a notebook.'
    );
    this.node.append(header, this._formHost, this._message, this._list);

    this._poll = new Poll({
      factory: () => this.refresh(),
      frequency: {
        interval: settings.refreshInterval,
        backoff: true,
        max: 60 * 1000
      },
      // Paused while the sidebar is collapsed or the browser tab hidden.
      standby: () => (this.isVisible ? 'when-hidden' : true),
      name: 'hubgate:clusters'
    });
  }

  /** Apply new settings (refresh interval, plot list). */
  updateSettings(settings: IPanelSettings): void {
    this._settings = settings;
    this._poll.frequency = {
      ...this._poll.frequency,
      interval: settings.refreshInterval
    };
    for (const cluster of this._clusters.values()) {
      this._cards.get(cluster.name)?.remove();
      this._cards.delete(cluster.name);
    }
    this._render();
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  /** Fetch the user's clusters and update the cards; rejects so the poll backs off. */
  async refresh(): Promise<void> {
    try {
      const reply = await requestAPI<IClustersReply>(
        `clusters?status=${LISTED_STATUSES}`
      );
      this._clusters = new Map(reply.clusters.map(c => [c.name, c]));
      this._showMessage('');
    } catch (err) {
      this._showMessage(`Could not list your clusters: ${errorMessage(err)}`);
      throw err;
    }
    this._render();
  }

  /** Open the options form (fetching the option spec each time: it may change). */
  async showForm(): Promise<void> {
    this._newButton.disabled = true;
    try {
      const reply = await requestAPI<IOptionsReply>('options');
      this._renderForm(new OptionsForm(reply.fields));
    } catch (err) {
      this._showMessage(
        `Could not load the cluster options: ${errorMessage(err)}`
      );
      this._newButton.disabled = false;
    }
  }

  protected onAfterShow(): void {
    void this._poll.refresh();
  }

  private _renderForm(form: OptionsForm): void {
    this._form?.dispose();
    this._form = form;
    this._formHost.textContent = '';
    const title = element(
      'h3',
      'hubgate-ClusterPanel-formTitle',
      'New cluster'
    );
    const error = element('div', 'hubgate-OptionsForm-submitError');
    error.setAttribute('role', 'alert');
    const create = button('Create', 'jp-mod-accept hubgate-CreateCluster');
    const cancel = button('Cancel', 'jp-mod-reject hubgate-CancelCluster');
    form.onValidityChanged = valid => {
      create.disabled = !valid;
    };
    create.addEventListener('click', async () => {
      const options = form.values();
      if (options === null) {
        create.disabled = true;
        return;
      }
      create.disabled = true;
      error.textContent = 'Creating…';
      try {
        await requestAPI<ICluster>('clusters', {
          method: 'POST',
          body: JSON.stringify({
            options,
            shutdown_on_close: false,
            lease_seconds: null
          })
        });
        this._closeForm();
        await this._poll.refresh();
      } catch (err) {
        error.textContent = errorMessage(err);
        create.disabled = false;
      }
    });
    cancel.addEventListener('click', () => this._closeForm());
    const actions = element('div', 'hubgate-ClusterPanel-formActions');
    actions.append(create, cancel);
    this._formHost.append(title);
    Widget.attach(form, this._formHost);
    this._formHost.append(error, actions);
    this._formHost.hidden = false;
  }

  private _closeForm(): void {
    if (this._form) {
      Widget.detach(this._form);
      this._form.dispose();
      this._form = null;
    }
    this._formHost.textContent = '';
    this._formHost.hidden = true;
    this._newButton.disabled = false;
  }

  private _showMessage(text: string): void {
    this._message.textContent = text;
    this._message.classList.toggle('hubgate-mod-error', Boolean(text));
  }

  private _render(): void {
    const shown = [...this._clusters.values()].filter(
      c => !this._dismissed.has(c.name)
    );
    for (const [name, card] of this._cards) {
      if (!this._clusters.has(name) || this._dismissed.has(name)) {
        card.remove();
        this._cards.delete(name);
      }
    }
    for (const cluster of shown) {
      let card = this._cards.get(cluster.name);
      if (!card) {
        card = new ClusterCard(cluster, this, this._settings.plots);
        this._cards.set(cluster.name, card);
      }
      card.update(cluster);
      this._list.appendChild(card.node); // keeps the service's order
    }
    if (shown.length === 0) {
      this._list.appendChild(this._empty);
    } else {
      this._empty.remove();
    }
  }

  // -- actions used by the cards ------------------------------------------------------

  async scale(cluster: ICluster, count: number): Promise<string | null> {
    const reply = await requestAPI<IScaleReply>(
      `clusters/${encodeURIComponent(cluster.name)}/scale`,
      { method: 'POST', body: JSON.stringify({ count }) }
    );
    this._accept(reply.cluster);
    return reply.ok ? null : reply.msg;
  }

  async adapt(
    cluster: ICluster,
    minimum: number,
    maximum: number
  ): Promise<string | null> {
    const reply = await requestAPI<IScaleReply>(
      `clusters/${encodeURIComponent(cluster.name)}/adapt`,
      {
        method: 'POST',
        body: JSON.stringify({ minimum, maximum, active: true })
      }
    );
    this._accept(reply.cluster);
    return reply.ok ? null : reply.msg;
  }

  async shutdown(cluster: ICluster): Promise<void> {
    const reply = await requestAPI<ICluster>(
      `clusters/${encodeURIComponent(cluster.name)}`,
      { method: 'DELETE' }
    );
    this._accept(reply);
  }

  dismiss(cluster: ICluster): void {
    this._dismissed.add(cluster.name);
    this._render();
  }

  openDashboard(cluster: ICluster, page: string, label: string): void {
    this._host.openDashboard(cluster, page, label);
  }

  insertCode(cluster: ICluster): Promise<void> {
    return this._host.insertCode(cluster);
  }

  private _accept(cluster: ICluster | undefined): void {
    if (cluster && cluster.name) {
      this._clusters.set(cluster.name, cluster);
      this._render();
    }
  }

  private _host: IPanelHost;
  private _settings: IPanelSettings;
  private _poll: Poll;
  private _newButton: HTMLButtonElement;
  private _formHost: HTMLElement;
  private _form: OptionsForm | null = null;
  private _message: HTMLElement;
  private _list: HTMLElement;
  private _empty: HTMLElement;
  private _clusters = new Map<string, ICluster>();
  private _cards = new Map<string, ClusterCard>();
  private _dismissed = new Set<string>();
}

/** One cluster: status, counts, scale/adapt/shutdown, dashboard panes, insert code. */
class ClusterCard {
  constructor(
    cluster: ICluster,
    panel: ClusterPanel,
    plots: { name: string; label: string }[]
  ) {
    this._cluster = cluster;
    this._panel = panel;
    this.node = element('div', 'hubgate-ClusterCard');
    this.node.dataset.cluster = cluster.name;

    const head = element('div', 'hubgate-ClusterCard-head');
    this._name = element('span', 'hubgate-ClusterCard-name', cluster.name);
    this._status = element('span', 'hubgate-ClusterCard-status');
    head.append(this._name, this._status);

    this._stats = element('div', 'hubgate-ClusterCard-stats');
    this._failure = element('div', 'hubgate-ClusterCard-failure');
    this._failure.setAttribute('role', 'alert');
    this._event = element('div', 'hubgate-ClusterCard-event');

    // Manual and adaptive scaling.
    this._controls = element('div', 'hubgate-ClusterCard-controls');
    this._workers = numberInput(cluster.workers.requested, 'Workers');
    const scale = button('Scale', 'hubgate-Scale', 'Run this many workers');
    scale.addEventListener('click', () =>
      this._run(async () => {
        const count = this._readCount(this._workers, 'workers');
        return this._panel.scale(this._cluster, count);
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
        return this._panel.adapt(this._cluster, minimum, maximum);
      })
    );
    const manual = element('div', 'hubgate-ClusterCard-row');
    manual.append(
      element('span', 'hubgate-ClusterCard-label', 'Workers'),
      this._workers,
      scale
    );
    const adaptive = element('div', 'hubgate-ClusterCard-row');
    adaptive.append(
      element('span', 'hubgate-ClusterCard-label', 'Adapt'),
      this._minimum,
      element('span', 'hubgate-ClusterCard-to', 'to'),
      this._maximum,
      adapt
    );

    // Dashboard panes and the link to the full dashboard.
    this._dashboard = element('div', 'hubgate-ClusterCard-dashboard');
    for (const plot of plots) {
      const open = button(
        plot.label,
        'hubgate-Plot',
        `Open ${plot.label} in a tab`
      );
      open.dataset.plot = plot.name;
      open.addEventListener('click', () =>
        this._panel.openDashboard(this._cluster, plot.name, plot.label)
      );
      this._dashboard.appendChild(open);
    }
    this._dashboardLink = element(
      'a',
      'hubgate-DashboardLink',
      'Full dashboard ↗'
    );
    this._dashboardLink.target = '_blank';
    this._dashboardLink.rel = 'noopener';
    this._dashboard.appendChild(this._dashboardLink);

    const footer = element('div', 'hubgate-ClusterCard-row');
    const insert = button(
      'Insert code',
      'hubgate-InsertCode',
      'Connect to this cluster from the active notebook'
    );
    insert.addEventListener('click', () =>
      this._run(async () => {
        await this._panel.insertCode(this._cluster);
        return null;
      })
    );
    this._shutdown = button('Shutdown', 'jp-mod-warn hubgate-Shutdown');
    this._shutdown.addEventListener('click', () =>
      this._run(async () => {
        await this._panel.shutdown(this._cluster);
        return null;
      })
    );
    footer.append(insert, this._shutdown);
    this._controls.append(manual, adaptive, this._dashboard, footer);

    this._dismiss = button('Dismiss', 'hubgate-Dismiss');
    this._dismiss.addEventListener('click', () =>
      this._panel.dismiss(this._cluster)
    );

    this._message = element('div', 'hubgate-ClusterCard-message');
    this._message.setAttribute('role', 'status');
    this.node.append(
      head,
      this._stats,
      this._event,
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
    this._cluster = cluster;
    this._status.textContent = cluster.status;
    this.node.dataset.status = cluster.status;
    const adaptive = formatAdaptive(cluster);
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
    if (adaptive) {
      this._stats.appendChild(
        element('span', 'hubgate-ClusterCard-adaptive', adaptive)
      );
    }
    const last = cluster.events?.[cluster.events.length - 1];
    this._event.textContent =
      cluster.status === 'PENDING' && last ? last.message : '';
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
  private _panel: ClusterPanel;
  private _name: HTMLElement;
  private _status: HTMLElement;
  private _stats: HTMLElement;
  private _event: HTMLElement;
  private _failure: HTMLElement;
  private _controls: HTMLElement;
  private _workers: HTMLInputElement;
  private _minimum: HTMLInputElement;
  private _maximum: HTMLInputElement;
  private _dashboard: HTMLElement;
  private _dashboardLink: HTMLAnchorElement;
  private _shutdown: HTMLButtonElement;
  private _dismiss: HTMLButtonElement;
  private _message: HTMLElement;
}
