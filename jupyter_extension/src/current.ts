// The plugins follow the notebook or console in front of the main area: the kernel they show (or
// open a terminal into) is the one of its session.

import { JupyterFrontEnd } from '@jupyterlab/application';
import { ISessionContext } from '@jupyterlab/apputils';
import { IConsoleTracker } from '@jupyterlab/console';
import { INotebookTracker } from '@jupyterlab/notebook';
import { Kernel } from '@jupyterlab/services';

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

/** Whether a kernel is a sandbox kernel: its kernel_info reply has a "sandbox" field. */
export async function isSandboxKernel(kernel: Kernel.IKernelConnection): Promise<boolean> {
  try {
    return !!((await kernel.info) as { sandbox?: unknown }).sandbox;
  } catch {
    return false;
  }
}
