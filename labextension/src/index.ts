/**
 * hubgate's JupyterLab extension: the "Dask clusters" sidebar, dashboard panes and
 * "insert code" into the active notebook.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, MainAreaWidget } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IFrame, LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { connectCode, DASHBOARD_PLOTS, dashboardPageUrl } from './format';
import { clusterTitle } from './names';
import { ClusterPanel, DEFAULT_SETTINGS, IPanelSettings } from './panel';
import { ICluster } from './types';

const PLUGIN_ID = 'hubgate-labextension:plugin';

namespace CommandIDs {
  export const newCluster = 'hubgate:new-cluster';
  export const showPanel = 'hubgate:show-clusters';
}

const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16">
<g class="jp-icon3" fill="#616161">
<rect x="3" y="3" width="7" height="7" rx="1.5"/><rect x="14" y="3" width="7" height="7" rx="1.5"/>
<rect x="3" y="14" width="7" height="7" rx="1.5"/><rect x="14" y="14" width="7" height="7" rx="1.5"/>
</g></svg>`;

export const clustersIcon = new LabIcon({
  name: 'hubgate:clusters',
  svgstr: ICON_SVG
});

function readSettings(
  settings: ISettingRegistry.ISettings | null
): IPanelSettings {
  if (!settings) {
    return DEFAULT_SETTINGS;
  }
  const interval = settings.get('refreshInterval').composite as number;
  const names = settings.get('dashboardPlots').composite as string[];
  const plots = names.map(
    name =>
      DASHBOARD_PLOTS.find(p => p.name === name) ?? {
        name,
        label: name.replace(/^individual-/, '').replace(/-/g, ' ')
      }
  );
  return { refreshInterval: interval, plots };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'A "Dask clusters" sidebar for hubgate: create, watch, scale and shut down your Dask clusters, open their dashboards.',
  autoStart: true,
  optional: [
    ILayoutRestorer,
    INotebookTracker,
    ISettingRegistry,
    ICommandPalette
  ],
  activate: (
    app: JupyterFrontEnd,
    restorer: ILayoutRestorer | null,
    notebooks: INotebookTracker | null,
    settingRegistry: ISettingRegistry | null,
    palette: ICommandPalette | null
  ) => {
    const dashboardId = (cluster: ICluster, page: string) =>
      `hubgate-dashboard-${cluster.name}-${page.replace(/[^A-Za-z0-9_-]/g, '_')}`;

    const openPane = (id: string): boolean => {
      for (const widget of app.shell.widgets('main')) {
        if (widget.id === id) {
          app.shell.activateById(id);
          return true;
        }
      }
      return false;
    };

    /** A pane showing one dashboard page (the one already open, if it is). */
    const dashboardWidget = (
      cluster: ICluster,
      page: string,
      label: string
    ): Widget => {
      const id = dashboardId(cluster, page);
      for (const widget of app.shell.widgets('main')) {
        if (widget.id === id) {
          return widget;
        }
      }
      // The service's dashboard link sends the frame on to the cluster's own origin
      // (never the hub's), where Bokeh needs scripts, its cookie and its websocket,
      // hence these sandbox exceptions.
      const frame = new IFrame({
        sandbox: ['allow-scripts', 'allow-same-origin']
      });
      frame.url = dashboardPageUrl(cluster, page) ?? 'about:blank';
      frame.addClass('hubgate-DashboardFrame');
      const widget = new MainAreaWidget({ content: frame });
      widget.id = id;
      widget.title.label = `${label} (${clusterTitle(cluster)})`;
      widget.title.caption = `${label}: dashboard of cluster ${clusterTitle(cluster)} (${cluster.name})`;
      widget.title.icon = clustersIcon;
      widget.title.closable = true;
      return widget;
    };

    const openDashboard = (cluster: ICluster, page: string, label: string) => {
      if (
        !dashboardPageUrl(cluster, page) ||
        openPane(dashboardId(cluster, page))
      ) {
        return;
      }
      const widget = dashboardWidget(cluster, page, label);
      app.shell.add(widget, 'main', { mode: 'split-right' });
      app.shell.activateById(widget.id);
    };

    const insertCode = async (cluster: ICluster) => {
      const current = notebooks?.currentWidget;
      if (!current) {
        throw new Error(
          'Open a notebook first: the code goes below its active cell'
        );
      }
      await current.context.ready;
      const notebook = current.content;
      NotebookActions.insertBelow(notebook);
      const cell = notebook.activeCell;
      if (!cell) {
        throw new Error('The notebook has no active cell to insert below');
      }
      cell.model.sharedModel.setSource(connectCode(cluster.name));
      app.shell.activateById(current.id);
    };

    const panel = new ClusterPanel({
      openDashboard,
      dashboardWidget,
      insertCode
    });
    panel.title.icon = clustersIcon;
    app.shell.add(panel, 'left', { rank: 300 });
    restorer?.add(panel, 'hubgate-clusters');

    app.commands.addCommand(CommandIDs.showPanel, {
      label: 'Show Dask clusters',
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIDs.newCluster, {
      label: 'New Dask cluster…',
      execute: async () => {
        app.shell.activateById(panel.id);
        await panel.showForm();
      }
    });
    palette?.addItem({ command: CommandIDs.newCluster, category: 'Dask' });
    palette?.addItem({ command: CommandIDs.showPanel, category: 'Dask' });

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(settings => {
          panel.updateSettings(readSettings(settings));
          settings.changed.connect(() =>
            panel.updateSettings(readSettings(settings))
          );
        })
        .catch(reason => {
          console.error(
            'hubgate: could not load settings, using defaults',
            reason
          );
        });
    }
  }
};

export default plugin;
