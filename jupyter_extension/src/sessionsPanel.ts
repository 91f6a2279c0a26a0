// The "Sandbox sessions" sidebar panel as a view: it draws what the kernel last answered and
// hands button clicks to its owner (sessions.ts), which talks to the kernel. Tests find its parts
// by the classes and data attributes set here.

import { terminalIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

/** One bash session, as the kernel's snapshot describes it. */
export interface ISessionRow {
  name: string;
  current: boolean;
  cwd: string;
  state: string;
  jobs: number | null;
  created: string;
}

/** The kernel's answer to every request on the sessions comm. */
export interface ISnapshot {
  sessions: ISessionRow[];
  current: string;
  error: string | null;
}

export type Action = 'use' | 'restart' | 'delete';

export interface IPanelOptions {
  /** A button was clicked. */
  onAction: (action: Action, name: string) => void;
  /** The panel became visible: what it shows may be stale. */
  onShow: () => void;
  /** The terminal button was clicked. */
  onTerminal: () => void;
}

// The one session that can be restarted but not deleted (the kernel refuses it too).
const UNDELETABLE = 'default';

const HEADINGS = ['', 'name', 'cwd', 'state', 'jobs', 'created', ''];

const BUTTON_TITLES: { [action in Action]: string } = {
  use: 'Run the following cells in this session',
  restart: "A fresh shell with this session's creation cwd and env",
  delete: 'End this session and every process it started'
};

function element<K extends keyof HTMLElementTagNameMap>(
  parent: HTMLElement,
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  parent.appendChild(node);
  return node;
}

export class SessionsPanel extends Widget {
  constructor(private readonly options: IPanelOptions) {
    super();
    this.id = 'sandbox-kernel-sessions';
    this.addClass('jp-SandboxSessions');
    this.title.icon = terminalIcon;
    this.title.caption = 'Sandbox sessions';
    const top = element(this.node, 'div', 'jp-SandboxSessions-top');
    this.header = element(top, 'div', 'jp-SandboxSessions-header');
    this.terminal = element(top, 'button', 'jp-SandboxSessions-terminal', 'terminal');
    this.terminal.title = "Open a terminal: a shell in this kernel's sandbox";
    this.terminal.addEventListener('click', () => this.options.onTerminal());
    this.error = element(this.node, 'div', 'jp-SandboxSessions-error');
    const table = element(this.node, 'table', 'jp-SandboxSessions-table');
    const headings = element(element(table, 'thead'), 'tr');
    HEADINGS.forEach(text => element(headings, 'th', undefined, text));
    this.body = element(table, 'tbody');
    this.table = table;
    // One listener for all buttons: the rows are redrawn with every answer.
    this.node.addEventListener('click', event => {
      const button = (event.target as HTMLElement).closest('button[data-action]');
      const row = button?.closest<HTMLElement>('[data-session]');
      if (button instanceof HTMLButtonElement && !button.disabled && row) {
        this.options.onAction(
          button.dataset.action as Action,
          row.dataset.session as string
        );
      }
    });
    this.render('No sandbox kernel', null);
  }

  /**
   * Shows a header line and the sessions of a snapshot; without one (no sandbox kernel, or no
   * answer yet) the table is hidden.
   */
  render(header: string, snapshot: ISnapshot | null): void {
    this.header.textContent = header;
    this.error.textContent = snapshot?.error ?? '';
    this.error.hidden = !snapshot?.error;
    this.table.hidden = !snapshot;
    this.terminal.hidden = !snapshot;
    this.body.replaceChildren();
    for (const session of snapshot?.sessions ?? []) {
      const row = element(this.body, 'tr', 'jp-SandboxSessions-row');
      row.dataset.session = session.name;
      row.dataset.current = String(session.current);
      row.dataset.state = session.state;
      const marker = element(row, 'td', 'jp-SandboxSessions-marker');
      if (session.current) {
        marker.textContent = '●';
        marker.title = 'current session: cells run here';
      }
      element(row, 'td', 'jp-SandboxSessions-name', session.name);
      element(row, 'td', 'jp-SandboxSessions-cwd', session.cwd).title = session.cwd;
      element(row, 'td', 'jp-SandboxSessions-state', session.state);
      element(row, 'td', 'jp-SandboxSessions-jobs', session.jobs === null ? '–' : String(session.jobs));
      element(row, 'td', 'jp-SandboxSessions-created', session.created);
      const buttons = element(row, 'td', 'jp-SandboxSessions-actions');
      for (const action of ['use', 'restart', 'delete'] as Action[]) {
        const button = element(buttons, 'button', 'jp-SandboxSessions-button', action);
        button.dataset.action = action;
        button.title = BUTTON_TITLES[action];
        button.disabled =
          (action === 'use' && session.current) ||
          (action === 'delete' && session.name === UNDELETABLE);
      }
    }
  }

  protected onAfterShow(): void {
    this.options.onShow();
  }

  // Restored open at startup, the panel may be attached visible without being shown.
  protected onAfterAttach(): void {
    if (this.isVisible) {
      this.options.onShow();
    }
  }

  private readonly header: HTMLDivElement;
  private readonly terminal: HTMLButtonElement;
  private readonly error: HTMLDivElement;
  private readonly table: HTMLTableElement;
  private readonly body: HTMLTableSectionElement;
}
