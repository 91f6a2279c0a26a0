// A status bar item that says how the sandbox kernel behind the current notebook or console is
// isolated. The kernel reports it in its kernel_info reply ("sandbox" field); kernels that do not
// (python3, ...) get no item. An unprotected kernel also raises a notification, once per kernel,
// so that it cannot go unnoticed even when its notebook is not the current widget.
// The package's other plugins: the "Sandbox sessions" sidebar panel (sessions.ts) and terminals
// into the sandbox (terminal.ts).

import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISessionContext, Notification } from '@jupyterlab/apputils';
import { IConsoleTracker } from '@jupyterlab/console';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Widget } from '@lumino/widgets';

import { currentContextOf } from './current';
import { sessionsPlugin } from './sessions';
import { terminalPlugin } from './terminal';

/** The kernel_info reply's "sandbox" field (sandbox_kernel.sandbox.Sandbox.status). */
interface ISandboxStatus {
  mode: 'isolated' | 'unprotected' | 'off';
  warning: string;
  facts: { [key: string]: string };
}

const LABELS: { [mode: string]: string } = {
  isolated: 'sandbox: isolated',
  unprotected: 'sandbox: UNPROTECTED',
  off: 'sandbox: isolation OFF'
};

/**
 * The sandbox status of the session's kernel, or null (no kernel, no answer, or not a sandbox
 * kernel). kernel.info is the reply to the first request only; after a restart (possibly with
 * another configuration) a fresh request is needed.
 */
async function sandboxStatus(
  context: ISessionContext,
  fresh: boolean
): Promise<ISandboxStatus | null> {
  const kernel = context.session?.kernel;
  try {
    const info = fresh
      ? (await kernel?.requestKernelInfo())?.content
      : await kernel?.info;
    return (info as { sandbox?: ISandboxStatus } | undefined)?.sandbox ?? null;
  } catch {
    return null;
  }
}

/** The status bar node; tests find it by its class and data-sandbox-mode. */
class SandboxIndicator extends Widget {
  constructor() {
    super();
    this.addClass('jp-SandboxIndicator');
    this.render(null);
  }

  render(status: ISandboxStatus | null): void {
    // Hidden by CSS without data-sandbox-mode: the status bar shows and hides its items itself.
    const node = this.node;
    node.classList.toggle(
      'jp-SandboxIndicator-danger',
      !!status && status.mode !== 'isolated'
    );
    if (!status) {
      node.removeAttribute('data-sandbox-mode');
      node.textContent = '';
      node.title = '';
      return;
    }
    node.dataset.sandboxMode = status.mode;
    node.textContent = LABELS[status.mode] ?? `sandbox: ${status.mode}`;
    const facts = Object.entries(status.facts).map(([k, v]) => `${k}: ${v}`);
    node.title = [status.warning, ...facts].filter(line => line).join('\n');
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'sandbox-kernel-indicator:plugin',
  description: "Shows the sandbox kernel's isolation in the status bar.",
  autoStart: true,
  requires: [IStatusBar, INotebookTracker, IConsoleTracker],
  activate: (
    app: JupyterFrontEnd,
    statusBar: IStatusBar,
    notebooks: INotebookTracker,
    consoles: IConsoleTracker
  ) => {
    const indicator = new SandboxIndicator();
    const warned = new Set<string>(); // kernel ids already notified about
    // The last status read per session, so that switching tabs shows it without a request.
    const latest = new WeakMap<ISessionContext, ISandboxStatus | null>();

    const currentContext = currentContextOf(app, notebooks, consoles);

    // Re-read the status of one session's kernel: notify if unprotected, and show it if the
    // session is the current one. A reply for a kernel that has been replaced since is dropped.
    const refresh = async (context: ISessionContext, fresh = false) => {
      const kernel = context.session?.kernel;
      const status = await sandboxStatus(context, fresh);
      if (context.session?.kernel !== kernel) {
        return;
      }
      latest.set(context, status);
      if (kernel && status && status.mode !== 'isolated' && !warned.has(kernel.id)) {
        warned.add(kernel.id);
        Notification.warning(status.warning || LABELS[status.mode], {
          autoClose: false
        });
      }
      if (context === currentContext()) {
        indicator.render(status);
      }
    };

    // Every notebook and console is watched, not only the current one, so that the warning
    // comes as soon as any sandbox kernel runs unprotected: on a new kernel, and once the
    // kernel is idle again after a restart.
    const watch = (context: ISessionContext) => {
      let restarted = false;
      context.kernelChanged.connect(() => void refresh(context));
      context.statusChanged.connect((_, status) => {
        if (status === 'restarting' || status === 'autorestarting') {
          restarted = true;
        } else if (status === 'idle' && restarted) {
          restarted = false;
          void refresh(context, true);
        }
      });
      void refresh(context);
    };
    notebooks.widgetAdded.connect((_, panel) => watch(panel.sessionContext));
    consoles.widgetAdded.connect((_, panel) => watch(panel.sessionContext));

    app.shell.currentChanged?.connect(() => {
      const context = currentContext();
      indicator.render((context && latest.get(context)) ?? null);
    });

    statusBar.registerStatusItem(plugin.id, {
      item: indicator,
      align: 'left',
      rank: 0
    });
  }
};

export default [plugin, sessionsPlugin, terminalPlugin];
