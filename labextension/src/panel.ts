/**
 * The "Dask clusters" sidebar: a New cluster button with the options form, and a card
 * per cluster of the user's (however created) with live counts and controls.
 */
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { HubgateError, requestAPI } from './api';
import { ClusterCard, ICardActions, button, element } from './card';
import { DASHBOARD_PLOTS, errorMessage } from './format';
import { displayNameProblem } from './names';
import { OptionsForm } from './optionsform';
import { IPlot, IPlotsReply } from './plots';
import { ICluster, IClustersReply, IOptionsReply, IScaleReply } from './types';

/** What the panel asks of the application. */
export interface IPanelHost {
  /** Open (or bring forward) a dashboard page as a pane. */
  openDashboard(cluster: ICluster, page: string, label: string): void;
  /** A pane for a dashboard page, for a drop into the layout. */
  dashboardWidget(cluster: ICluster, page: string, label: string): Widget;
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

export class ClusterPanel extends Widget implements ICardActions {
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
      this._renderForm(new OptionsForm(reply));
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
    const name = new NameField();
    const error = element('div', 'hubgate-OptionsForm-submitError');
    error.setAttribute('role', 'alert');
    const create = button('Create', 'jp-mod-accept hubgate-CreateCluster');
    const cancel = button('Cancel', 'jp-mod-reject hubgate-CancelCluster');
    let optionsValid = true;
    const updateCreate = () => {
      create.disabled = !optionsValid || !name.valid;
    };
    form.onValidityChanged = valid => {
      optionsValid = valid;
      updateCreate();
    };
    name.onValidityChanged = updateCreate;
    const submit = async () => {
      const options = form.values();
      if (options === null || !name.valid) {
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
            display_name: name.value || null,
            shutdown_on_close: false,
            lease_seconds: null
          })
        });
        this._closeForm();
        this._newButton.focus();
        await this._poll.refresh();
      } catch (err) {
        error.textContent = '';
        if (name.owns(err)) {
          name.showError(errorMessage(err));
        } else {
          error.textContent = errorMessage(err);
        }
        create.disabled = false;
      }
    };
    create.addEventListener('click', () => void submit());
    name.input.addEventListener('keydown', event => {
      if (event.key === 'Enter') {
        event.preventDefault();
        void submit();
      }
    });
    cancel.addEventListener('click', () => {
      this._closeForm();
      this._newButton.focus();
    });
    const actions = element('div', 'hubgate-ClusterPanel-formActions');
    actions.append(create, cancel);
    this._formHost.append(title, name.node);
    Widget.attach(form, this._formHost);
    this._formHost.append(error, actions);
    this._formHost.hidden = false;
    name.input.focus();
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
    shown.forEach((cluster, index) => {
      let card = this._cards.get(cluster.name);
      if (!card) {
        card = new ClusterCard(cluster, this, this._settings.plots);
        this._cards.set(cluster.name, card);
      }
      card.update(cluster);
      // The service's order; a card moves only when out of place, since moving a node
      // takes the keyboard focus out of it.
      const there = this._list.children[index] ?? null;
      if (there !== card.node) {
        this._list.insertBefore(card.node, there);
      }
    });
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

  async plots(cluster: ICluster): Promise<IPlot[]> {
    const reply = await requestAPI<IPlotsReply>(
      `clusters/${encodeURIComponent(cluster.name)}/plots`
    );
    return reply.plots;
  }

  openDashboard(cluster: ICluster, page: string, label: string): void {
    this._host.openDashboard(cluster, page, label);
  }

  dashboardWidget(cluster: ICluster, page: string, label: string): Widget {
    return this._host.dashboardWidget(cluster, page, label);
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

let nextFieldId = 0;

/** The New-cluster form's optional Name, checked as typed; the service has the last word. */
class NameField {
  constructor() {
    this.node = element('div', 'hubgate-OptionsForm-row hubgate-NameField');
    const id = `hubgate-cluster-name-${++nextFieldId}`;
    const label = element('label', 'hubgate-OptionsForm-label', 'Name');
    label.htmlFor = id;
    this.input = element('input', 'hubgate-ClusterName');
    this.input.type = 'text';
    this.input.id = id;
    this.input.placeholder = 'optional, e.g. my-analysis';
    this.input.autocomplete = 'off';
    this.input.spellcheck = false;
    this.input.maxLength = 64;
    const help = element(
      'div',
      'hubgate-OptionsForm-help',
      'Lowercase letters, digits and -; left empty, one is picked for you.'
    );
    help.id = `${id}-help`;
    this._message = element('div', 'hubgate-OptionsForm-error');
    this._message.id = `${id}-error`;
    this._message.setAttribute('role', 'alert');
    this.input.setAttribute(
      'aria-describedby',
      `${help.id} ${this._message.id}`
    );
    this.input.addEventListener('input', () => this._check());
    this.node.append(label, this.input, help, this._message);
  }

  readonly node: HTMLElement;
  readonly input: HTMLInputElement;
  onValidityChanged: () => void = () => undefined;

  get value(): string {
    return this.input.value.trim();
  }

  get valid(): boolean {
    return displayNameProblem(this.input.value) === null;
  }

  /** Whether a refused create is about the name: 400, or 409 naming it. */
  owns(err: unknown): boolean {
    if (!(err instanceof HubgateError) || !this.value) {
      return false;
    }
    return (
      err.status === 400 ||
      (err.status === 409 && err.message.includes(`'${this.value}'`))
    );
  }

  /** Show the service's refusal of the name, and take the user there. */
  showError(message: string): void {
    this._show(message);
    this.input.focus();
  }

  private _check(): void {
    this._show(displayNameProblem(this.input.value) ?? '');
    this.onValidityChanged();
  }

  private _show(message: string): void {
    this._message.textContent = message;
    this.input.classList.toggle('hubgate-mod-invalid', Boolean(message));
    if (message) {
      this.input.setAttribute('aria-invalid', 'true');
    } else {
      this.input.removeAttribute('aria-invalid');
    }
  }

  private _message: HTMLElement;
}
