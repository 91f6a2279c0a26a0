// The "Sandbox sessions" sidebar panel's plugin: it follows the notebook or console in front,
// talks to its kernel over the comm target "sandbox_kernel.sessions" and puts each answer (a full
// snapshot of the sessions) in the panel. The sessions change only through cells or through the
// panel's own actions, so the panel asks again only when it is shown, when another notebook or
// console comes to the front, when that one's kernel changes or restarts, and once its kernel is
// idle after cells (debounced, so that a burst of cells costs one request).
// A refused action's line (a restart while a cell runs, ...) is kept by the panel, not taken from
// every answer: it stays, through any refresh, until it may no longer hold, that is until the
// answer to the next action on that kernel, the end of a cell there, or a restart of the kernel.

import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ISessionContext } from '@jupyterlab/apputils';
import { IConsoleTracker } from '@jupyterlab/console';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

import { currentContextOf, isSandboxKernel } from './current';
import { Action, ISnapshot, SessionsPanel } from './sessionsPanel';
import { OPEN_TERMINAL } from './terminal';

const TARGET = 'sandbox_kernel.sessions';
const IDLE_DEBOUNCE_MS = 200;
const NO_SANDBOX = 'No sandbox kernel';

/** Whether an iopub message says that the kernel is done with a cell. */
function cellFinished(msg: KernelMessage.IMessage): boolean {
  return (
    KernelMessage.isStatusMsg(msg) &&
    msg.content.execution_state === 'idle' &&
    (msg.parent_header as Partial<KernelMessage.IHeader>).msg_type === 'execute_request'
  );
}

/** Keeps the panel in step with the kernel of the current notebook or console. */
class SessionsController {
  constructor(
    private readonly currentContext: () => ISessionContext | null,
    openTerminal: () => void
  ) {
    this.panel = new SessionsPanel({
      onAction: (action, name) => this.act(action, name),
      onShow: () => void this.refresh(),
      onTerminal: openTerminal
    });
  }

  readonly panel: SessionsPanel;

  /**
   * Follows one notebook's or console's session for its whole life; only the current one's
   * events lead to requests. Answers to our own comm requests also take the kernel through
   * busy and idle: only the idle after a cell counts, or every answer would ask again.
   */
  watch(context: ISessionContext): void {
    let restarted = false;
    context.kernelChanged.connect(() => this.refreshIf(context));
    context.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'autorestarting') {
        restarted = true;
        this.forgetRefusal(context);
      } else if (status === 'idle' && restarted) {
        // The restart disposed of the comm: refresh opens a new one.
        restarted = false;
        this.refreshIf(context);
      }
    });
    context.iopubMessage.connect((_, msg) => {
      if (!cellFinished(msg)) {
        return;
      }
      this.forgetRefusal(context); // the refresh below shows the panel without it
      if (context === this.currentContext()) {
        window.clearTimeout(this.debounce);
        this.debounce = window.setTimeout(() => void this.refresh(), IDLE_DEBOUNCE_MS);
      }
    });
  }

  private forgetRefusal(context: ISessionContext): void {
    const kernel = context.session?.kernel;
    if (kernel) {
      this.refusals.delete(kernel);
    }
  }

  refreshIf(context: ISessionContext): void {
    if (context === this.currentContext()) {
      void this.refresh();
    }
  }

  /** Asks the current kernel for a snapshot: the answer comes to onMsg of its comm. */
  async refresh(): Promise<void> {
    window.clearTimeout(this.debounce);
    if (!this.panel.isVisible) {
      return; // shown again, it refreshes
    }
    const generation = ++this.generation;
    const context = this.currentContext();
    const kernel = context?.session?.kernel ?? null;
    if (!context || !kernel) {
      this.show(null, NO_SANDBOX, null);
      return;
    }
    const sandbox = await isSandboxKernel(kernel);
    if (generation !== this.generation) {
      return; // another notebook came to the front meanwhile, or another refresh started
    }
    if (!sandbox) {
      this.show(null, NO_SANDBOX, null);
      return;
    }
    const header = `${context.kernelDisplayName}: ${context.name}`;
    if (this.refused.has(kernel)) {
      this.show(kernel, `${header} (no sessions to show: the kernel refused)`, null);
      return;
    }
    if (this.shownKernel !== kernel) {
      this.show(kernel, header, null); // nothing of the last kernel's while the answer is on its way
    }
    const comm = this.comms.get(kernel);
    if (comm && !comm.isDisposed) {
      comm.send({ action: 'list' });
    } else {
      this.open(kernel); // the kernel answers the opening with a snapshot
    }
  }

  private open(kernel: Kernel.IKernelConnection): void {
    // The kernel offers no subshells, so the comm goes to its main shell, which answers even
    // while a cell runs.
    const comm = kernel.createComm(TARGET);
    this.comms.set(kernel, comm);
    let answered = false;
    comm.onMsg = msg => {
      answered = true;
      const snapshot = msg.content.data as unknown as ISnapshot;
      const request = (msg.parent_header as Partial<KernelMessage.IHeader>).msg_id ?? '';
      // The answer to an action says whether it was refused; a list or an opening says nothing
      // about earlier refusals.
      if (this.actions.delete(request)) {
        if (snapshot.error) {
          this.refusals.set(kernel, snapshot.error);
        } else {
          this.refusals.delete(kernel);
        }
      }
      // An answer for a kernel that is no longer in front is dropped.
      const context = this.currentContext();
      if (context?.session?.kernel === kernel) {
        this.show(kernel, `${context.kernelDisplayName}: ${context.name}`, snapshot);
      }
    };
    comm.onClose = () => {
      // A kernel that does not know the target closes the comm before any answer; a later close
      // just means asking again on a new one.
      if (!answered) {
        this.refused.add(kernel);
      }
      void this.refresh();
    };
    comm.open({});
  }

  private act(action: Action, name: string): void {
    const kernel = this.currentContext()?.session?.kernel;
    const comm = kernel && this.comms.get(kernel);
    if (comm && !comm.isDisposed) {
      this.actions.add(comm.send({ action, name }).msg.header.msg_id);
    } else {
      void this.refresh(); // the kernel restarted under the panel: show what it has now
    }
  }

  private show(
    kernel: Kernel.IKernelConnection | null,
    header: string,
    snapshot: ISnapshot | null
  ): void {
    this.shownKernel = kernel;
    const refusal = (kernel && this.refusals.get(kernel)) ?? null;
    this.panel.render(header, snapshot && { ...snapshot, error: refusal });
  }

  private readonly comms = new WeakMap<Kernel.IKernelConnection, Kernel.IComm>();
  private readonly refused = new WeakSet<Kernel.IKernelConnection>();
  /** Each kernel's standing refusal line (see the top of this file). */
  private readonly refusals = new WeakMap<Kernel.IKernelConnection, string>();
  /** The msg_ids of the actions sent whose answers have not come yet. */
  private readonly actions = new Set<string>();
  private shownKernel: Kernel.IKernelConnection | null = null;
  private generation = 0;
  private debounce = 0;
}

export const sessionsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'sandbox-kernel-indicator:sessions',
  description: "Lists the sandbox kernel's bash sessions in the left sidebar.",
  autoStart: true,
  requires: [INotebookTracker, IConsoleTracker],
  optional: [ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    consoles: IConsoleTracker,
    restorer: ILayoutRestorer | null
  ) => {
    const controller = new SessionsController(currentContextOf(app, notebooks, consoles), () =>
      void app.commands.execute(OPEN_TERMINAL)
    );
    notebooks.widgetAdded.connect((_, panel) => controller.watch(panel.sessionContext));
    consoles.widgetAdded.connect((_, panel) => controller.watch(panel.sessionContext));
    app.shell.currentChanged?.connect(() => void controller.refresh());
    app.shell.add(controller.panel, 'left', { rank: 600 });
    // Reopened at the next start if it was open.
    restorer?.add(controller.panel, controller.panel.id);
  }
};
