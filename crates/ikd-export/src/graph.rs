//! A small builder of ONNX graphs over the generated protobuf types: nodes with one output,
//! initialisers, and the few operators the exported graph uses, each written for the opset the
//! model declares.

use crate::onnx::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// One dimension of a graph input or output: a number, or a name (dynamic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dim {
    Fixed(i64),
    Named(&'static str),
}

/// The nodes and initialisers of a graph under construction.
pub(crate) struct Graph {
    pub(crate) nodes: Vec<NodeProto>,
    pub(crate) initializers: Vec<TensorProto>,
    opset: i64,
    next: usize,
}

fn attr(name: &str, kind: AttributeType) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(kind as i32), ..Default::default() }
}

/// An integer attribute.
pub(crate) fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { i: Some(v), ..attr(name, AttributeType::Int) }
}

/// A list-of-integers attribute.
pub(crate) fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { ints: v.to_vec(), ..attr(name, AttributeType::Ints) }
}

/// A string attribute.
pub(crate) fn attr_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto { s: Some(v.as_bytes().to_vec()), ..attr(name, AttributeType::String) }
}

/// A graph input or output: a tensor of `elem` with these dimensions.
pub(crate) fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => Value::DimValue(*n),
                Dim::Named(s) => Value::DimParam((*s).to_string()),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

impl Graph {
    /// An empty graph for `opset` (of the default domain).
    pub(crate) fn new(opset: i64) -> Self {
        Self { nodes: Vec::new(), initializers: Vec::new(), opset, next: 0 }
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.next += 1;
        format!("{hint}_{}", self.next)
    }

    /// Adds a node with one output (named after `hint`) and returns that output's name.
    pub(crate) fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        hint: &str,
    ) -> String {
        let out = self.fresh(hint);
        self.node_named(op, inputs, attribute, &out);
        out
    }

    /// Adds a node whose one output is called `output` (a graph output).
    pub(crate) fn node_named(
        &mut self,
        op: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
        output: &str,
    ) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(format!("{op}_{output}")),
            op_type: Some(op.into()),
            attribute,
            ..Default::default()
        });
    }

    /// A float initialiser; returns its name.
    pub(crate) fn init_f32(&mut self, name: &str, dims: &[i64], data: &[f32]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: Some(name.into()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Float as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_string()
    }

    /// An int64 initialiser; returns its name.
    pub(crate) fn init_i64(&mut self, name: &str, dims: &[i64], data: &[i64]) -> String {
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(TensorProto {
            name: Some(name.into()),
            dims: dims.to_vec(),
            data_type: Some(DataType::Int64 as i32),
            raw_data: Some(raw),
            ..Default::default()
        });
        name.to_string()
    }

    /// A float scalar constant (an initialiser of rank 0).
    pub(crate) fn scalar(&mut self, hint: &str, v: f32) -> String {
        let name = self.fresh(hint);
        self.init_f32(&name, &[], &[v])
    }

    /// `Conv` with a bias, square kernel, `stride` and `pad` on all sides.
    pub(crate) fn conv(
        &mut self,
        x: &str,
        (w, b): (&str, &str),
        kernel: i64,
        stride: i64,
        pad: i64,
    ) -> String {
        let attrs = vec![
            attr_ints("kernel_shape", &[kernel, kernel]),
            attr_ints("strides", &[stride, stride]),
            attr_ints("pads", &[pad, pad, pad, pad]),
            attr_ints("dilations", &[1, 1]),
            attr_int("group", 1),
        ];
        self.node("Conv", &[x, w, b], attrs, "conv")
    }

    /// Elementwise binary operator (`Add`, `Sub`, `Mul`, `Div`, `Max`, `GreaterOrEqual`, …).
    pub(crate) fn binary(&mut self, op: &str, a: &str, b: &str) -> String {
        self.node(op, &[a, b], vec![], &op.to_ascii_lowercase())
    }

    /// Elementwise unary operator (`Relu`, `Sqrt`, …).
    pub(crate) fn unary(&mut self, op: &str, x: &str) -> String {
        self.node(op, &[x], vec![], &op.to_ascii_lowercase())
    }

    /// `ReduceSum` over `axes` (axes as an input: opset 13 on).
    pub(crate) fn reduce_sum(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        let a = self.fresh("axes");
        self.init_i64(&a, &[axes.len() as i64], axes);
        self.node("ReduceSum", &[x, &a], vec![attr_int("keepdims", keepdims as i64)], "sum")
    }

    /// `ReduceMax` over `axes` (an attribute before opset 18, an input from 18 on).
    pub(crate) fn reduce_max(&mut self, x: &str, axes: &[i64], keepdims: bool) -> String {
        let keep = attr_int("keepdims", keepdims as i64);
        if self.opset >= 18 {
            let a = self.fresh("axes");
            self.init_i64(&a, &[axes.len() as i64], axes);
            self.node("ReduceMax", &[x, &a], vec![keep], "max")
        } else {
            self.node("ReduceMax", &[x], vec![keep, attr_ints("axes", axes)], "max")
        }
    }

    /// `Resize` of the last two axes by an integer `factor` (scales `[1, 1, f, f]`):
    /// `mode` `linear` or `nearest`, with the coordinate transformation `coords`.
    pub(crate) fn resize(&mut self, x: &str, factor: usize, mode: &str, coords: &str) -> String {
        let s = self.fresh("scales");
        let f = factor as f32;
        self.init_f32(&s, &[4], &[1.0, 1.0, f, f]);
        let mut attrs =
            vec![attr_str("mode", mode), attr_str("coordinate_transformation_mode", coords)];
        if mode == "nearest" {
            attrs.push(attr_str("nearest_mode", "floor"));
        }
        self.node("Resize", &[x, "", &s], attrs, "resize")
    }
}
