/**
 * The one way the extension talks to the server: `<base_url>/hubgate/<path>`, which the
 * jupyter-server extension forwards to the hubgate service with the server's token.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error whose message is the service's `{"error": ...}` text, with its status. */
export class HubgateError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
    this.name = 'HubgateError';
  }
}

/**
 * Call the hubgate API through the server extension and return its JSON reply.
 *
 * @param endPoint path under `api/hubgate/`, e.g. `clusters/abc/scale`
 * @param init request options (method, body)
 */
export async function requestAPI<T>(
  endPoint = '',
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'hubgate', endPoint);
  if (init.body && !init.headers) {
    init = { ...init, headers: { 'Content-Type': 'application/json' } };
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new HubgateError(
      `Could not reach the Jupyter server: ${String(error)}`,
      0
    );
  }
  const text = await response.text();
  let data: any = null;
  let isJSON = true;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      isJSON = false;
    }
  }
  if (!response.ok) {
    if (isJSON && data && (data.error || data.message)) {
      throw new HubgateError(data.error || data.message, response.status);
    }
    // An HTML page: the server has no hubgate handlers, or something in between failed.
    const hint =
      response.status === 404
        ? ': the hubgate server extension is not enabled on this Jupyter server; ask your administrator'
        : '';
    throw new HubgateError(
      `${response.status} ${response.statusText}${hint}`,
      response.status
    );
  }
  if (!isJSON) {
    throw new HubgateError(
      'The server answered with something other than JSON; reload the page',
      response.status
    );
  }
  return data as T;
}
