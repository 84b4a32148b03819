import CoreML
import CoreVideo
import Foundation

/// A fixed, deterministic input for any model: every multi-array input is
/// filled with a smooth pattern in [-1, 1] (the manifest's input range),
/// every image input is a mid-grey buffer. Timing does not depend on values.
enum Inputs {
    static func make(for description: MLModelDescription) throws -> MLFeatureProvider {
        var features: [String: MLFeatureValue] = [:]
        for (name, feature) in description.inputDescriptionsByName {
            switch feature.type {
            case .multiArray:
                guard let constraint = feature.multiArrayConstraint else { throw BenchError.unsupportedInput(name) }
                let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType)
                for index in 0..<array.count {
                    array[index] = NSNumber(value: sin(Double(index) * 0.001))
                }
                features[name] = MLFeatureValue(multiArray: array)
            case .image:
                guard let constraint = feature.imageConstraint else { throw BenchError.unsupportedInput(name) }
                let buffer = try greyBuffer(constraint)
                features[name] = MLFeatureValue(pixelBuffer: buffer)
            default:
                throw BenchError.unsupportedInput("\(name) of type \(feature.type.rawValue)")
            }
        }
        return try MLDictionaryFeatureProvider(dictionary: features)
    }

    static func greyBuffer(_ constraint: MLImageConstraint) throws -> CVPixelBuffer {
        var buffer: CVPixelBuffer?
        let status = CVPixelBufferCreate(kCFAllocatorDefault, constraint.pixelsWide, constraint.pixelsHigh,
                                         constraint.pixelFormatType, nil, &buffer)
        guard status == kCVReturnSuccess, let pixels = buffer else {
            throw BenchError.unsupportedInput("cannot allocate a \(constraint.pixelsWide)x\(constraint.pixelsHigh) image")
        }
        CVPixelBufferLockBaseAddress(pixels, [])
        if let base = CVPixelBufferGetBaseAddress(pixels) {
            memset(base, 128, CVPixelBufferGetDataSize(pixels))
        }
        CVPixelBufferUnlockBaseAddress(pixels, [])
        return pixels
    }

    /// The plan's probe file as floats, checked against the byte count the host wrote.
    static func probeValues(_ probes: Plan.Probes, in folder: URL) throws -> [Float] {
        let data = try Data(contentsOf: folder.appendingPathComponent(probes.path))
        guard data.count == probes.bytes else {
            throw BenchError.incompleteCopy(expected: probes.bytes, found: data.count)
        }
        var values = [Float](repeating: 0, count: data.count / 4)
        _ = values.withUnsafeMutableBytes { data.copyBytes(to: $0) }  // little-endian on every Apple device
        return values
    }

    /// One probe (H x W x C floats, the host's preprocessing) as the model's one multi-array input.
    static func probe(_ values: ArraySlice<Float>, for description: MLModelDescription) throws -> MLFeatureProvider {
        let arrays = description.inputDescriptionsByName.filter { $0.value.type == .multiArray }
        guard arrays.count == 1, description.inputDescriptionsByName.count == 1, let input = arrays.first,
              let constraint = input.value.multiArrayConstraint else {
            throw BenchError.unsupportedInput("probe inputs feed models of one multi-array input")
        }
        let name = input.key
        let array = try MLMultiArray(shape: constraint.shape, dataType: constraint.dataType)
        guard array.count == values.count else {
            throw BenchError.unsupportedInput("\(name) holds \(array.count) values; a probe has \(values.count)")
        }
        var index = 0
        for value in values {
            array[index] = NSNumber(value: value)
            index += 1
        }
        return try MLDictionaryFeatureProvider(dictionary: [name: MLFeatureValue(multiArray: array)])
    }

    /// The model's scores for one prediction: a classifier's probabilities in its class-label order,
    /// else its first multi-array output (by name), as the host's Core ML predictor reads them.
    static func scores(_ result: MLFeatureProvider, of description: MLModelDescription) throws -> [Double] {
        if let name = description.predictedProbabilitiesName, let labels = description.classLabels,
           let probabilities = result.featureValue(for: name)?.dictionaryValue {
            return try labels.map { label in
                guard let key = label as? AnyHashable, let value = probabilities[key] else {
                    throw BenchError.unsupportedInput("no probability for class \(label)")
                }
                return value.doubleValue
            }
        }
        for name in description.outputDescriptionsByName.keys.sorted() {
            if let array = result.featureValue(for: name)?.multiArrayValue {
                return (0..<array.count).map { array[$0].doubleValue }
            }
        }
        throw BenchError.unsupportedInput("the model has no probabilities or multi-array output")
    }
}
