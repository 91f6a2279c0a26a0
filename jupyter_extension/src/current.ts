// Both plugins follow the notebook or console in front of the main area: the kernel they show is
// the one of its session.

import { JupyterFrontEnd } from '@jupyterlab/application';
import { ISessionContext } from '@jupyterlab/apputils';
import { IConsoleTracker } from '@jupyterlab/console';
import { INotebookTracker } from '@jupyterlab/notebook';

/** A function giving the session of the current main area widget, if it is a notebook or a console. */
export function currentContextOf(
  app: JupyterFrontEnd,
  notebooks: INotebookTracker,
  consoles: IConsoleTracker
): () => ISessionContext | null {
  return () => {
    const widget = app.shell.currentWidget;
    if (widget && notebooks.has(widget)) {
      return notebooks.currentWidget?.sessionContext ?? null;
    }
    if (widget && consoles.has(widget)) {
      return consoles.currentWidget?.sessionContext ?? null;
    }
    return null;
  };
}
