// Terminals into the sandbox: JupyterLab's own terminal widget (@jupyterlab/terminal, xterm.js),
// connected not to the server's terminals (a shell on the host) but to the kernel of the notebook
// or console in front, over the comm target "sandbox_kernel.terminal": the shell runs inside that
// kernel's sandbox, with its isolation. The command "sandbox-kernel:open-terminal" opens one (the
// command palette, and the sessions panel's button).

import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import {
  ICommandPalette,
  ISessionContext,
  MainAreaWidget,
  Notification
} from '@jupyterlab/apputils';
import { IConsoleTracker } from '@jupyterlab/console';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { Kernel, ServerConnection, Terminal as TerminalAPI } from '@jupyterlab/services';
import { ITerminal, Terminal } from '@jupyterlab/terminal';
import { terminalIcon } from '@jupyterlab/ui-components';
import { ISignal, Signal } from '@lumino/signaling';

import { currentContextOf, isSandboxKernel } from './current';

const TARGET = 'sandbox_kernel.terminal';
const CLOSE_WAIT_MS = 5000;
// The user's terminal settings (font, theme, scrollback, screen reader mode...) apply here too.
const TERMINAL_SETTINGS = '@jupyterlab/terminal-extension:plugin';
// Ours whatever the settings say: a closed tab ends its shell (it cannot be reattached); an ended
// shell's tab stays open with its last lines and why it ended.
const OWN_OPTIONS = { shutdownOnClose: true, closeOnExit: false, initialCommand: '' };
export const OPEN_TERMINAL = 'sandbox-kernel:open-terminal';

/** What the kernel sends on the comm (sandbox_kernel/terminals.py). */
interface ITerminalData {
  stdout?: string;
  error?: string;
  exited?: number | null;
}

/**
 * The terminal widget's connection, over a kernel comm on a kernel connection of its own (the
 * notebook's goes when the notebook closes or changes kernel; the kernel and this shell stay). It
 * ends with the comm: the shell's exit, the kernel's restart or death, or shutdown() when the
 * widget closes, or the page goes (which ends every process the terminal started).
 */
class SandboxTerminalConnection implements TerminalAPI.ITerminalConnection {
  constructor(notebookKernel: Kernel.IKernelConnection) {
    const kernel = (this.kernel = notebookKernel.clone({ handleComms: true }));
    this.comm = kernel.createComm(TARGET);
    this.comm.onMsg = msg => {
      const data = msg.content.data as ITerminalData;
      if (typeof data.stdout === 'string') {
        this.emit(data.stdout);
      } else if (data.error) {
        this.emit(`\r\n[sandbox terminal: ${data.error}]\r\n`);
      }
    };
    this.comm.onClose = msg => {
      const data = msg.content.data as ITerminalData;
      this.end(
        data.error
          ? `[sandbox terminal: ${data.error}]`
          : `[the shell exited with status ${data.exited ?? 'unknown'}]`
      );
    };
    kernel.statusChanged.connect(this.onKernelStatus, this);
    window.addEventListener('pagehide', this.onPageHide);
    this.comm.open({ rows: 24, cols: 80 });
    this.setStatus('connected');
  }

  readonly name = 'in the sandbox';
  readonly model = { name: this.name };
  readonly serverSettings = ServerConnection.makeSettings();

  get messageReceived(): ISignal<this, TerminalAPI.IMessage> {
    return this._messageReceived;
  }

  get connectionStatus(): TerminalAPI.ConnectionStatus {
    return this._status;
  }

  get connectionStatusChanged(): ISignal<this, TerminalAPI.ConnectionStatus> {
    return this._statusChanged;
  }

  get disposed(): ISignal<this, void> {
    return this._disposed;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  send(message: TerminalAPI.IMessage): void {
    if (this._status !== 'connected' || this.comm.isDisposed) {
      return;
    }
    if (message.type === 'stdin') {
      this.comm.send({ stdin: String(message.content?.[0] ?? '') });
    } else if (message.type === 'set_size') {
      this.comm.send({ set_size: (message.content ?? []) as number[] });
    }
  }

  /** A shell that has ended cannot be reattached: a new terminal is a new shell. */
  async reconnect(): Promise<void> {
    return;
  }

  async shutdown(): Promise<void> {
    this.dispose();
  }

  /** Ends the shell (if it still runs) and the kernel connection. */
  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    const closing = this.comm.isDisposed ? null : this.comm.close();
    this.setStatus('disconnected');
    this._isDisposed = true;
    window.removeEventListener('pagehide', this.onPageHide);
    this.kernel.statusChanged.disconnect(this.onKernelStatus, this);
    // The connection goes once the kernel has taken the close (its idle after it), or after a
    // while: disposed at once, it could drop the close, and the shell would run on.
    const kernel = this.kernel;
    const taken = closing?.done.catch(() => undefined);
    void Promise.race([taken, new Promise(resolve => setTimeout(resolve, CLOSE_WAIT_MS))]).then(() =>
      kernel.dispose()
    );
    this._disposed.emit();
    Signal.clearData(this);
  }

  /** A reloaded page cannot reattach to this shell: it ends with the page. */
  private readonly onPageHide = () => this.dispose();

  private onKernelStatus(_: Kernel.IKernelConnection, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
      this.end('[the kernel restarted: this shell is gone]');
    }
  }

  private emit(text: string): void {
    this._messageReceived.emit({ type: 'stdout', content: [text] });
  }

  /** The shell is gone: say why; the widget then writes that the session finished. */
  private end(line: string): void {
    if (this._status !== 'connected') {
      return;
    }
    this.emit(`\r\n${line}\r\n`);
    this._messageReceived.emit({ type: 'disconnect' });
    this.setStatus('disconnected');
  }

  private setStatus(status: TerminalAPI.ConnectionStatus): void {
    if (this._status !== status) {
      this._status = status;
      this._statusChanged.emit(status);
    }
  }

  private readonly kernel: Kernel.IKernelConnection;
  private readonly comm: Kernel.IComm;
  private _status: TerminalAPI.ConnectionStatus = 'connecting';
  private _isDisposed = false;
  private readonly _messageReceived = new Signal<this, TerminalAPI.IMessage>(this);
  private readonly _statusChanged = new Signal<this, TerminalAPI.ConnectionStatus>(this);
  private readonly _disposed = new Signal<this, void>(this);
}

/** The command (and its palette entry) that opens a terminal into the kernel in front. */
function addTerminalCommand(
  app: JupyterFrontEnd,
  currentContext: () => ISessionContext | null,
  palette: ICommandPalette | null,
  settings: ISettingRegistry | null
): void {
  app.commands.addCommand(OPEN_TERMINAL, {
    label: 'New Terminal in the Sandbox',
    caption: "A shell inside the sandbox of the current notebook's or console's kernel",
    icon: terminalIcon,
    isEnabled: () => !!currentContext()?.session?.kernel,
    execute: async () => {
      const context = currentContext();
      const kernel = context?.session?.kernel;
      if (!context || !kernel || !(await isSandboxKernel(kernel))) {
        Notification.error('A terminal in the sandbox needs a notebook or console with a sandbox kernel in front.', { autoClose: 5000 });
        return;
      }
      const chosen = await settings?.load(TERMINAL_SETTINGS).catch(() => null);
      const content = new Terminal(new SandboxTerminalConnection(kernel), {
        ...(chosen?.composite as Partial<ITerminal.IOptions> | undefined),
        ...OWN_OPTIONS
      });
      // Settings changed later apply too, as to JupyterLab's own terminals.
      const follow = () => {
        for (const [name, value] of Object.entries(chosen?.composite ?? {})) {
          if (!(name in OWN_OPTIONS)) {
            content.setOption(name as keyof ITerminal.IOptions, value as never);
          }
        }
      };
      chosen?.changed.connect(follow);
      content.disposed.connect(() => chosen?.changed.disconnect(follow));
      const widget = new MainAreaWidget({ content });
      widget.addClass('jp-SandboxTerminal');
      widget.title.icon = terminalIcon;
      widget.title.caption = `A shell in the sandbox of ${context.name}'s kernel`;
      // The widget names itself after the connection once it is up ("Terminal in the sandbox").
      app.shell.add(widget, 'main');
      app.shell.activateById(widget.id);
    }
  });
  palette?.addItem({ command: OPEN_TERMINAL, category: 'Sandbox' });
}

export const terminalPlugin: JupyterFrontEndPlugin<void> = {
  id: 'sandbox-kernel-indicator:terminal',
  description: "Opens terminals into the sandbox of the current notebook's or console's kernel.",
  autoStart: true,
  requires: [INotebookTracker, IConsoleTracker],
  optional: [ICommandPalette, ISettingRegistry],
  activate: (
    app: JupyterFrontEnd,
    notebooks: INotebookTracker,
    consoles: IConsoleTracker,
    palette: ICommandPalette | null,
    settings: ISettingRegistry | null
  ) => addTerminalCommand(app, currentContextOf(app, notebooks, consoles), palette, settings)
};
